"""Sources and the spool: what is seen, settled and copied in."""
