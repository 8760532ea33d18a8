//! Op families, one file each; every file has a `register` function.

pub mod activation;
pub mod arith;
pub mod conv;
pub mod epilogue;
pub mod gemm;
pub mod norm;
pub mod pool;
pub mod qdq;
pub mod shape;

use super::registry::OpRegistry;

/// The registry with every op family (the registry itself knows no op: each family registers
/// its own builders, so `registry` never imports `ops`).
pub fn standard_registry() -> OpRegistry {
    let mut r = OpRegistry::default();
    register_all(&mut r);
    r
}

/// Registers every supported operator.
pub fn register_all(r: &mut OpRegistry) {
    activation::register(r);
    arith::register(r);
    conv::register(r);
    epilogue::register(r);
    gemm::register(r);
    norm::register(r);
    pool::register(r);
    qdq::register(r);
    shape::register(r);
}
