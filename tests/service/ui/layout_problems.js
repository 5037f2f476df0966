// Layout problems of the page as it is drawn (tests/service/test_ui_browser.py).
//
// Every box wider than its own box allows (scrollWidth beyond clientWidth: clipped or
// overflowing content) or sticking out of its parent, any two tables whose boxes intersect, and a
// page wider than the window. Inline boxes, hidden ones, form controls, the insides of SVG charts
// and the visually-hidden captions are not boxes to check.
const problems = [];
const describe = (el) => {
  const classes = typeof el.className === "string" ? el.className.trim().split(/\s+/).filter(Boolean) : [];
  return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + classes.map((c) => "." + c).join("");
};
const root = document.documentElement;
if (root.scrollWidth > root.clientWidth + 1) {
  problems.push(`the page is ${root.scrollWidth}px wide in a ${root.clientWidth}px window`);
}
const ignored = ".visually-hidden, .skip-link, svg *, input, textarea, select, details:not([open]) > :not(summary)";
for (const el of document.querySelectorAll("header *, main *")) {
  const style = getComputedStyle(el);
  if (["inline", "none", "contents"].includes(style.display) || el.closest(ignored)) continue;
  const box = el.getBoundingClientRect();
  if (box.width === 0 && box.height === 0) continue;
  if (el.scrollWidth > el.clientWidth + 1 && el.tagName.toLowerCase() !== "svg") {
    problems.push(`${describe(el)}: content ${el.scrollWidth}px wide in ${el.clientWidth}px`);
  }
  const parent = el.parentElement;
  if (parent && !["absolute", "fixed"].includes(style.position)) {
    const outer = parent.getBoundingClientRect();
    if (box.right > outer.right + 1 || box.left < outer.left - 1) {
      const span = (r) => `${Math.round(r.left)}-${Math.round(r.right)}px`;
      problems.push(`${describe(el)} (${span(box)}) sticks out of ${describe(parent)} (${span(outer)})`);
    }
  }
}
const tables = [...document.querySelectorAll("main table")].filter((t) => t.getBoundingClientRect().width > 0);
for (let i = 0; i < tables.length; i++) {
  for (let j = i + 1; j < tables.length; j++) {
    const a = tables[i].getBoundingClientRect();
    const b = tables[j].getBoundingClientRect();
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) {
      problems.push(`tables ${describe(tables[i])} and ${describe(tables[j])} overlap`);
    }
  }
}
return problems;
