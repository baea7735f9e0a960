"""Operating the bank: certificates, the nginx edge, the Prometheus scrape configuration."""
