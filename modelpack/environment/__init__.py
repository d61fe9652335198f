"""Environments: a tag moved by promote and rollback (`place`, `move`), its events (`history`, referrers of
a per-environment anchor), the rules of promote and rollback (`promote`), the policy stored on the anchor
(`policy`) with one checker per requirement kind (`checks`), and who acted (`actor`)."""
