//! RLWE layer over fhe.rs: parameters, centred weight polynomials, wire formats.
