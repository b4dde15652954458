"""What every query kind shares: dates, properties, formulas, the codec, SQL helpers, checks."""
