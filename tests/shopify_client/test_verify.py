"""Signature and identity checks: webhook HMAC, OAuth query HMAC, shop domains, session tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from shopify_client import (
    InvalidSessionTokenError,
    InvalidShopDomainError,
    SessionToken,
    decode_session_token,
    is_valid_shop_domain,
    normalize_shop_domain,
    oauth_hmac,
    oauth_message,
    verify_oauth_hmac,
    verify_webhook_hmac,
    webhook_hmac,
)

SECRET = "current-app-secret-0123456789abcdef"
PREVIOUS_SECRET = "previous-app-secret-0123456789abcdef"
API_KEY = "client-id-123"
SHOP = "acme-test.myshopify.com"
BODY = b'{"id":7390182734650012345,"email":"ravi@example.com"}'
TIMESTAMP = 1_767_225_600

# Shopify's documented OAuth example (secret "hush"), from the "Verify the installation request"
# step of https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
# (formerly https://shopify.dev/tutorials/authenticate-with-oauth#verification).
DOC_SECRET = "hush"
DOC_QUERY = {
    "code": "0907a61c0c8d55e99db179b68161bc00",
    "hmac": "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf",
    "shop": "some-shop.myshopify.com",
    "state": "0.6784241404160823",
    "timestamp": "1337178173",
}
DOC_MESSAGE = (
    "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com"
    "&state=0.6784241404160823&timestamp=1337178173"
)


def hex_hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def b64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signed_query(params: dict[str, Any], message: str, secret: str = SECRET) -> dict[str, Any]:
    """``params`` plus an ``hmac`` computed here, independently of the code under test."""
    return {**params, "hmac": hex_hmac(secret, message)}


class TestIsValidShopDomain:
    @pytest.mark.parametrize(
        "domain", [SHOP, "ACME-Test.MyShopify.com", "a.myshopify.com", "9-shop.myshopify.com"]
    )
    def test_accepts_myshopify_hosts(self, domain: str) -> None:
        assert is_valid_shop_domain(domain) is True

    @pytest.mark.parametrize(
        "domain",
        [
            "",
            "acme.com",
            "myshopify.com",
            ".myshopify.com",
            "-acme.myshopify.com",
            "acme_test.myshopify.com",
            "acme test.myshopify.com",
            "acme.myshopify.com.evil.example",
            "evil.example/acme.myshopify.com",
            "https://acme.myshopify.com",
            "acme.myshopify.com/",
            "acme.myshopify.com\n",
            "acme.myshopify.com:443",
            "acme.myshopify.io",
            # Non-ASCII letters that case-fold onto ASCII ones under re.IGNORECASE.
            "shopa.my\u017fhopify.com",  # LATIN SMALL LETTER LONG S
            "\u0130nk.myshopify.com",  # LATIN CAPITAL LETTER I WITH DOT ABOVE
            "\u0131nk.myshopify.com",  # LATIN SMALL LETTER DOTLESS I
            "\u212aite.myshopify.com",  # KELVIN SIGN
            "shop.myshop\u0130fy.com",
        ],
    )
    def test_rejects_anything_else(self, domain: str) -> None:
        assert is_valid_shop_domain(domain) is False


class TestNormalizeShopDomain:
    def test_lower_cases_a_valid_domain(self) -> None:
        assert normalize_shop_domain("ACME-Test.MyShopify.COM") == "acme-test.myshopify.com"

    @pytest.mark.parametrize("domain", ["acme.com", "https://acme-test.myshopify.com", ""])
    def test_raises_for_an_invalid_domain(self, domain: str) -> None:
        with pytest.raises(InvalidShopDomainError):
            normalize_shop_domain(domain)


class TestWebhookHmac:
    def test_is_base64_of_hmac_sha256_over_the_raw_body(self) -> None:
        assert webhook_hmac(BODY, SECRET) == b64_hmac(SECRET, BODY)

    def test_depends_on_every_byte_of_the_body(self) -> None:
        assert webhook_hmac(BODY, SECRET) != webhook_hmac(BODY + b" ", SECRET)


class TestVerifyWebhookHmac:
    def test_accepts_the_correct_signature(self) -> None:
        assert verify_webhook_hmac(BODY, b64_hmac(SECRET, BODY), [SECRET]) is True

    def test_rejects_a_signature_made_with_another_secret(self) -> None:
        assert verify_webhook_hmac(BODY, b64_hmac("someone-else", BODY), [SECRET]) is False

    def test_accepts_the_previous_secret_during_rotation(self) -> None:
        header = b64_hmac(PREVIOUS_SECRET, BODY)
        assert verify_webhook_hmac(BODY, header, [SECRET, PREVIOUS_SECRET]) is True
        assert verify_webhook_hmac(BODY, header, [SECRET]) is False

    def test_accepts_the_current_secret_listed_first(self) -> None:
        header = b64_hmac(SECRET, BODY)
        assert verify_webhook_hmac(BODY, header, [SECRET, PREVIOUS_SECRET]) is True

    def test_rejects_a_tampered_body(self) -> None:
        header = b64_hmac(SECRET, BODY)
        assert verify_webhook_hmac(BODY.replace(b"ravi", b"eve"), header, [SECRET]) is False

    @pytest.mark.parametrize("header", [None, "", "   "])
    def test_rejects_a_missing_or_empty_header(self, header: str | None) -> None:
        assert verify_webhook_hmac(BODY, header, [SECRET]) is False

    @pytest.mark.parametrize(
        "header",
        ["not base64!", "%%%%", "é" * 44, b64_hmac(SECRET, BODY)[:-2], b64_hmac(SECRET, BODY).encode().hex()],
    )
    def test_rejects_a_header_that_is_not_the_base64_digest(self, header: str) -> None:
        assert verify_webhook_hmac(BODY, header, [SECRET]) is False

    def test_ignores_empty_secrets(self) -> None:
        assert verify_webhook_hmac(BODY, b64_hmac("", BODY), ["", SECRET]) is False

    def test_rejects_when_no_secret_is_configured(self) -> None:
        assert verify_webhook_hmac(BODY, b64_hmac(SECRET, BODY), []) is False


class TestOauthMessage:
    def test_documented_example_sorts_pairs_and_drops_hmac(self) -> None:
        shuffled = dict(reversed(list(DOC_QUERY.items())))
        assert oauth_message(shuffled) == DOC_MESSAGE

    def test_drops_signature_as_well(self) -> None:
        assert oauth_message({"shop": SHOP, "signature": "abc", "hmac": "def"}) == f"shop={SHOP}"

    def test_renders_array_parameters_as_a_json_list_under_the_bare_name(self) -> None:
        query = {"ids[]": ["1", "2"], "shop": SHOP}
        assert oauth_message(query) == f'ids=["1", "2"]&shop={SHOP}'

    def test_renders_a_single_valued_array_parameter_as_a_list(self) -> None:
        assert oauth_message({"ids[]": "7"}) == 'ids=["7"]'

    def test_renders_a_sequence_value_without_brackets_as_a_list(self) -> None:
        assert oauth_message({"ids": ["1", "2"]}) == 'ids=["1", "2"]'

    def test_merges_a_key_repeated_by_a_multi_dict(self) -> None:
        class PairList(dict[str, str]):
            def items(self) -> Any:
                return [("ids[]", "1"), ("shop", SHOP), ("ids[]", "2")]

        assert oauth_message(PairList()) == f'ids=["1", "2"]&shop={SHOP}'

    def test_merges_a_repeated_key_without_brackets(self) -> None:
        class PairList(dict[str, str]):
            def items(self) -> Any:
                return [("ids", "1"), ("ids", "2")]

        assert oauth_message(PairList()) == 'ids=["1", "2"]'

    def test_escapes_percent_ampersand_and_equals(self) -> None:
        query = {"k%y": "v%1", "x=y&z": "a&b=c"}
        assert oauth_message(query) == "k%25y=v%251&x%3Dy%26z=a%26b=c"

    def test_a_value_with_an_ampersand_cannot_pass_for_two_pairs(self) -> None:
        assert oauth_message({"a": "1&b=2"}) != oauth_message({"a": "1", "b": "2"})


class TestOauthHmac:
    def test_matches_the_documented_digest(self) -> None:
        assert oauth_hmac(DOC_QUERY, DOC_SECRET) == DOC_QUERY["hmac"]

    def test_documented_digest_is_hmac_sha256_hex_of_the_documented_message(self) -> None:
        assert hex_hmac(DOC_SECRET, DOC_MESSAGE) == DOC_QUERY["hmac"]

    def test_is_the_hex_hmac_of_the_escaped_message(self) -> None:
        query = {"ids[]": ["1", "2"], "a&b": "c%d", "shop": SHOP}
        expected = hex_hmac(SECRET, f'a%26b=c%25d&ids=["1", "2"]&shop={SHOP}')
        assert oauth_hmac(query, SECRET) == expected


class TestVerifyOauthHmac:
    def test_accepts_the_documented_example(self) -> None:
        assert verify_oauth_hmac(DOC_QUERY, [DOC_SECRET], now=1337178173 + 5) is True

    def test_rejects_the_documented_example_with_another_secret(self) -> None:
        assert verify_oauth_hmac(DOC_QUERY, ["hush!"], now=1337178173 + 5) is False

    @pytest.mark.parametrize("transform", [str.upper, str.title, lambda h: h[:10].upper() + h[10:]])
    def test_rejects_a_digest_that_is_not_lower_case(self, transform: Any) -> None:
        # Shopify's Python and JavaScript libraries compare the hex digest as sent: upper case fails.
        query = {**DOC_QUERY, "hmac": transform(DOC_QUERY["hmac"])}
        assert query["hmac"] != DOC_QUERY["hmac"]
        assert verify_oauth_hmac(query, [DOC_SECRET], now=1337178173) is False

    def test_accepts_the_previous_secret(self) -> None:
        params = {"shop": SHOP, "timestamp": str(TIMESTAMP)}
        query = signed_query(params, f"shop={SHOP}&timestamp={TIMESTAMP}", PREVIOUS_SECRET)
        assert verify_oauth_hmac(query, [SECRET, PREVIOUS_SECRET], now=TIMESTAMP) is True
        assert verify_oauth_hmac(query, [SECRET], now=TIMESTAMP) is False
        assert verify_oauth_hmac(query, [PREVIOUS_SECRET, SECRET], now=TIMESTAMP) is True

    def test_accepts_array_parameters(self) -> None:
        params = {"ids[]": ["1", "2"], "shop": SHOP, "timestamp": str(TIMESTAMP)}
        query = signed_query(params, f'ids=["1", "2"]&shop={SHOP}&timestamp={TIMESTAMP}')
        assert verify_oauth_hmac(query, [SECRET], now=TIMESTAMP) is True

    def test_rejects_array_parameters_in_another_order(self) -> None:
        params = {"ids[]": ["2", "1"], "shop": SHOP, "timestamp": str(TIMESTAMP)}
        query = signed_query(params, f'ids=["1", "2"]&shop={SHOP}&timestamp={TIMESTAMP}')
        assert verify_oauth_hmac(query, [SECRET], now=TIMESTAMP) is False

    def test_accepts_escaped_characters(self) -> None:
        params = {"note": "50% & more=yes", "a=b": "c", "timestamp": str(TIMESTAMP)}
        message = f"a%3Db=c&note=50%25 %26 more=yes&timestamp={TIMESTAMP}"
        query = signed_query(params, message)
        assert verify_oauth_hmac(query, [SECRET], now=TIMESTAMP) is True

    def test_rejects_a_signature_over_the_unescaped_message(self) -> None:
        params = {"a": "1&b=2", "timestamp": str(TIMESTAMP)}
        query = signed_query(params, f"a=1&b=2&timestamp={TIMESTAMP}")
        assert verify_oauth_hmac(query, [SECRET], now=TIMESTAMP) is False

    @pytest.mark.parametrize(
        ("field", "value"),
        [("shop", "evil-shop.myshopify.com"), ("code", "0907a61c0c8d55e99db179b68161bc01"), ("state", "1")],
    )
    def test_rejects_a_tampered_parameter(self, field: str, value: str) -> None:
        query = {**DOC_QUERY, field: value}
        assert verify_oauth_hmac(query, [DOC_SECRET], now=1337178173) is False

    def test_rejects_an_added_parameter(self) -> None:
        query = {**DOC_QUERY, "embedded": "1"}
        assert verify_oauth_hmac(query, [DOC_SECRET], now=1337178173) is False

    def test_rejects_a_timestamp_older_than_24_hours(self) -> None:
        day = 24 * 3600
        assert verify_oauth_hmac(DOC_QUERY, [DOC_SECRET], now=1337178173 + day) is True
        assert verify_oauth_hmac(DOC_QUERY, [DOC_SECRET], now=1337178173 + day + 1) is False

    def test_rejects_a_timestamp_more_than_90_seconds_in_the_future(self) -> None:
        assert verify_oauth_hmac(DOC_QUERY, [DOC_SECRET], now=1337178173 - 90) is True
        assert verify_oauth_hmac(DOC_QUERY, [DOC_SECRET], now=1337178173 - 91) is False

    def test_uses_the_current_time_by_default(self) -> None:
        assert verify_oauth_hmac(DOC_QUERY, [DOC_SECRET]) is False
        now = str(int(time.time()))
        query = signed_query({"shop": SHOP, "timestamp": now}, f"shop={SHOP}&timestamp={now}")
        assert verify_oauth_hmac(query, [SECRET]) is True

    @pytest.mark.parametrize("hmac_value", [None, ""])
    def test_rejects_a_missing_hmac(self, hmac_value: str | None) -> None:
        query = {key: value for key, value in DOC_QUERY.items() if key != "hmac"}
        if hmac_value is not None:
            query["hmac"] = hmac_value
        assert verify_oauth_hmac(query, [DOC_SECRET], now=1337178173) is False

    def test_rejects_a_non_ascii_hmac(self) -> None:
        query = {**DOC_QUERY, "hmac": "é" * 64}
        assert verify_oauth_hmac(query, [DOC_SECRET], now=1337178173) is False

    @pytest.mark.parametrize("timestamp", [None, "", "soon", "1337178173.5"])
    def test_rejects_a_missing_or_malformed_timestamp(self, timestamp: str | None) -> None:
        params = {"shop": SHOP} if timestamp is None else {"shop": SHOP, "timestamp": timestamp}
        message = "&".join(f"{key}={value}" for key, value in sorted(params.items()))
        query = signed_query(params, message)
        assert verify_oauth_hmac(query, [SECRET], now=1337178173) is False


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_claims(now: int, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": f"https://{SHOP}/admin",
        "dest": f"https://{SHOP}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": str(uuid.uuid4()),
        "sid": "session-abc",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def session_token(
    now: int | None = None, *, secret: str = SECRET, algorithm: str = "HS256", **claims: Any
) -> str:
    moment = int(time.time()) if now is None else now
    return jwt.encode(session_claims(moment, **claims), secret, algorithm=algorithm)


def decode(token: str, secrets: list[str] | None = None) -> SessionToken:
    return decode_session_token(token, api_key=API_KEY, secrets=secrets if secrets is not None else [SECRET])


class TestDecodeSessionToken:
    def test_returns_shop_user_and_session(self) -> None:
        now = int(time.time())
        claims = decode(session_token(now))
        assert claims == SessionToken(shop=SHOP, user_id="42", session_id="session-abc", expires_at=now + 60)

    def test_lower_cases_the_shop(self) -> None:
        token = session_token(
            dest="https://ACME-Test.myshopify.com", iss="https://acme-test.MYSHOPIFY.com/admin"
        )
        assert decode(token).shop == SHOP

    def test_expired_beyond_the_leeway_is_rejected(self) -> None:
        now = int(time.time())
        with pytest.raises(InvalidSessionTokenError, match="expired"):
            decode(session_token(now - 120, exp=now - 20))

    def test_expired_within_the_leeway_is_accepted(self) -> None:
        now = int(time.time())
        assert decode(session_token(now - 60, exp=now - 5)).expires_at == now - 5

    def test_not_yet_valid_beyond_the_leeway_is_rejected(self) -> None:
        now = int(time.time())
        with pytest.raises(InvalidSessionTokenError, match="not yet valid"):
            decode(session_token(now, nbf=now + 30, iat=now))

    def test_not_yet_valid_within_the_leeway_is_accepted(self) -> None:
        now = int(time.time())
        assert decode(session_token(now, nbf=now + 5, iat=now)).shop == SHOP

    def test_wrong_audience_is_rejected(self) -> None:
        with pytest.raises(InvalidSessionTokenError, match=r"[Aa]udience"):
            decode(session_token(aud="another-app"))

    def test_wrong_secret_is_rejected(self) -> None:
        with pytest.raises(InvalidSessionTokenError, match="signature"):
            decode(session_token(secret="not-the-app-secret-0123456789abcdef"))

    def test_previous_secret_is_accepted(self) -> None:
        token = session_token(secret=PREVIOUS_SECRET)
        assert decode(token, [SECRET, PREVIOUS_SECRET]).shop == SHOP
        with pytest.raises(InvalidSessionTokenError):
            decode(token, [SECRET])

    def test_no_secret_rejects_everything(self) -> None:
        with pytest.raises(InvalidSessionTokenError):
            decode(session_token(), ["", ""])

    def test_alg_none_is_rejected(self) -> None:
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        payload = b64url(json.dumps(session_claims(int(time.time()))).encode())
        with pytest.raises(InvalidSessionTokenError, match="algorithm"):
            decode(f"{header}.{payload}.")

    def test_alg_none_with_a_valid_hs256_signature_is_rejected(self) -> None:
        valid = session_token()
        _, payload, signature = valid.split(".")
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        with pytest.raises(InvalidSessionTokenError, match="algorithm"):
            decode(f"{header}.{payload}.{signature}")

    def test_hs512_is_rejected(self) -> None:
        token = session_token(secret=SECRET * 4, algorithm="HS512")
        with pytest.raises(InvalidSessionTokenError, match="algorithm"):
            decode(token, [SECRET * 4])

    @pytest.mark.parametrize(
        "token",
        ["", "garbage", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.!!!.x", f"{b64url(b'[1]')}.e30.x"],
    )
    def test_malformed_strings_are_rejected(self, token: str) -> None:
        with pytest.raises(InvalidSessionTokenError):
            decode(token)

    def test_a_payload_that_is_not_json_is_rejected(self) -> None:
        header = b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = b64url(b"not json")
        signature = b64url(hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
        with pytest.raises(InvalidSessionTokenError):
            decode(f"{header}.{payload}.{signature}")

    @pytest.mark.parametrize(
        "dest",
        [
            "https://acme.example.com",
            "https://acme-test.myshopify.com.evil.example",
            "acme-test.myshopify.com",
        ],
    )
    def test_dest_that_is_not_a_shop_domain_is_rejected(self, dest: str) -> None:
        with pytest.raises(InvalidSessionTokenError, match="dest"):
            decode(session_token(dest=dest, iss=f"{dest}/admin"))

    def test_dest_that_is_not_a_url_is_rejected(self) -> None:
        with pytest.raises(InvalidSessionTokenError, match="dest"):
            decode(session_token(dest="https://[acme-test.myshopify.com"))

    def test_iss_for_another_shop_is_rejected(self) -> None:
        with pytest.raises(InvalidSessionTokenError, match="iss"):
            decode(session_token(iss="https://other-test.myshopify.com/admin"))

    @pytest.mark.parametrize("claim", ["exp", "nbf", "aud", "iss", "dest"])
    def test_a_missing_required_claim_is_rejected(self, claim: str) -> None:
        token = jwt.encode(
            {key: value for key, value in session_claims(int(time.time())).items() if key != claim},
            SECRET,
            algorithm="HS256",
        )
        with pytest.raises(InvalidSessionTokenError):
            decode(token)

    def test_user_and_session_are_optional(self) -> None:
        claims = decode(session_token(sub=None, sid=None))
        assert (claims.user_id, claims.session_id) == (None, None)
