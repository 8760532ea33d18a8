//! Plaintext reference executor of the plan integer semantics (see docs/semantics.md).
