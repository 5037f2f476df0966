"""tierline: customer value for Shopify merchants."""
