"""The floor below photos: files moved, copied and removed so that none is ever lost,
damaged, overwritten or exposed. Its modules are imported one by one (`safefs.transfer`,
`safefs.names`, ...); `transfer` says the rules."""
