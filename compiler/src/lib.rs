//! heqc
