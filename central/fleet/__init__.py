"""Fleet control: enrollment and revocation of nodes, their broker accounts, and remote config."""
