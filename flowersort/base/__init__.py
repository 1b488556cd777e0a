"""The ground floor: errors and exit codes, the words of the journal and the outcomes,
where state lives."""
