"""Tables and figures. Everything here reads small metric JSONs, never checkpoints."""
