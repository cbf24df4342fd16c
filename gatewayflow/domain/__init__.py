"""Pure domain model: documents, enums, transition tables, naming rules. Imports nothing of ours."""
