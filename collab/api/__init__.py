"""HTTP plumbing shared by every domain's routes: errors, body parsing, middleware."""
