"""The standardized extract for the provincial petition bureau.

- schema: the published, versioned schema and which rows each package holds;
- person_keys: the province-keyed pseudonym of each petitioner;
- package: build a Frictionless Data Package with a checksum manifest;
- validate: check a package (both sides of the delivery);
- transfer: move a package to the receiver atomically and resumably;
- delivery: deliver once through the ledger, follow up acknowledgements;
- commands: `xinfang extract ...`.
"""
