"""From scores to served lists: business rules, reasons, the atomic publish, the online store."""
