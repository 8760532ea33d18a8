//! Temporary stand-ins for the response-packing API (replaced by he/pack.rs).
#![allow(missing_docs, dead_code, unused_variables)]
use super::*;

pub struct Switched(Sanitized);
pub struct SeededGaloisKeys;
#[derive(Debug)]
pub struct GaloisKeys;

impl Sanitized {
    pub fn switch(self, params: &Params) -> Result<Switched, HeError> {
        Ok(Switched(self))
    }
}
impl Switched {
    pub fn into_response(
        self,
        params: &Params,
        positions: &[usize],
        budget: &HeBudget,
    ) -> Result<ResponseCt, HeError> {
        self.0.into_response(params, positions, budget)
    }
}
impl SeededGaloisKeys {
    pub fn to_bytes(&self, params: &Params) -> Vec<u8> {
        unimplemented!()
    }
    pub fn from_bytes(params: &Params, exps: &[usize], bytes: &[u8]) -> Result<Self, HeError> {
        unimplemented!()
    }
}
impl GaloisKeys {
    pub fn new(params: &Params, k: &SeededGaloisKeys) -> Result<Self, HeError> {
        unimplemented!()
    }
}
impl SecretKey {
    pub fn galois_keys<R: RngCore + CryptoRng>(
        &self,
        exps: &[usize],
        rng: &mut R,
    ) -> Result<SeededGaloisKeys, HeError> {
        unimplemented!()
    }
}
pub fn pack(
    params: &Params,
    keys: &GaloisKeys,
    members: Vec<Option<Switched>>,
    stride: usize,
) -> Result<Switched, HeError> {
    unimplemented!()
}
