"""Cache tiers behind one small protocol."""
