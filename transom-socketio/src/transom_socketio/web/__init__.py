"""HTTP plumbing shared by every REST handler."""
