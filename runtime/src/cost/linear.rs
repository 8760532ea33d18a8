//! Exact bytes and rounds of the HE linear-layer protocols.
