//! `.npy` sample files for `heq-run --mode plain`: float32/float64 in, float32 or int32 out.
//!
//! Reading parses and checks the header first (format version, dtype, shape) and requires the
//! file to hold exactly the data the header announces, so a hostile header cannot make the
//! reader allocate more than the file's own size; `ndarray-npy` then decodes the data (byte
//! order, Fortran order). Writing goes through a temporary file and a rename, so a failure never
//! leaves a half-written array.

use crate::error::NpyError;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WritableElement, WriteNpyExt};
use std::path::Path;

/// An array in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray<T> {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<T>,
}

/// Reads a float32 or float64 `.npy` file as `f32` (float64 values are rounded to nearest).
///
/// # Errors
/// I/O failures (with the path), a damaged or non-`.npy` file, another dtype.
pub fn read_f32(path: &Path) -> Result<NpyArray<f32>, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    decode_f32(&bytes)
}

/// Decodes the bytes of a float32 or float64 `.npy` file, like [`read_f32`].
///
/// # Errors
/// A damaged or non-`.npy` file, or another dtype.
pub fn decode_f32(bytes: &[u8]) -> Result<NpyArray<f32>, NpyError> {
    let header = Header::parse(bytes)?;
    let elem_bytes = match header.descr.as_str() {
        "<f4" | ">f4" => 4,
        "<f8" | ">f8" => 8,
        other => return Err(NpyError::Dtype(other.to_string())),
    };
    let elements = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = elements.and_then(|n| n.checked_mul(elem_bytes));
    let actual = bytes.len() - header.data_offset;
    if expected != Some(actual) {
        return Err(NpyError::Length {
            shape: header.shape,
            actual,
        });
    }
    let decode = |e: ndarray_npy::ReadNpyError| NpyError::Format(e.to_string());
    let data = if elem_bytes == 4 {
        ArrayD::<f32>::read_npy(bytes)
            .map_err(decode)?
            .iter()
            .copied()
            .collect()
    } else {
        ArrayD::<f64>::read_npy(bytes)
            .map_err(decode)?
            .iter()
            .map(|&x| x as f32)
            .collect()
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Writes a row-major array as `.npy` (float32 for `f32`, int32 for `i32`, …), atomically.
///
/// # Errors
/// I/O failures (with the path); `data` not filling `shape`.
pub fn write<T: WritableElement>(path: &Path, array: NpyArray<T>) -> Result<(), NpyError> {
    let (shape, len) = (array.shape, array.data.len());
    let array = ArrayD::from_shape_vec(IxDyn(&shape), array.data)
        .map_err(|_| NpyError::Format(format!("{len} elements do not fill the shape {shape:?}")))?;
    let mut bytes = Vec::new();
    array
        .write_npy(&mut bytes)
        .map_err(|e| NpyError::Format(e.to_string()))?;
    crate::output_file::write_atomically(path, &bytes).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, error: std::io::Error) -> NpyError {
    NpyError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// The parts of an `.npy` header heq-run needs.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    shape: Vec<usize>,
    /// Where the data starts.
    data_offset: usize,
}

impl Header {
    /// Parses the magic, version, header length and the header dictionary
    /// (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`).
    fn parse(bytes: &[u8]) -> Result<Header, NpyError> {
        let bad = |why: &str| NpyError::Format(why.to_string());
        if bytes.get(..6) != Some(b"\x93NUMPY".as_slice()) {
            return Err(bad("not an .npy file (bad magic)"));
        }
        let (len, start) = match bytes.get(6..12) {
            Some([1, _, a, b, ..]) => (usize::from(u16::from_le_bytes([*a, *b])), 10usize),
            Some([2 | 3, _, a, b, c, d]) => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 12),
            Some([v, ..]) => return Err(NpyError::Format(format!("unknown .npy version {v}"))),
            _ => return Err(bad("truncated header")),
        };
        let text = start.checked_add(len).and_then(|end| bytes.get(start..end));
        let text = text.ok_or_else(|| bad("truncated header"))?;
        let text = std::str::from_utf8(text).map_err(|_| bad("header is not text"))?;
        let mut p = Literal { s: text.trim_end() };
        let (mut descr, mut shape, mut order) = (None, None, None);
        p.expect('{')?;
        while !p.eat('}') {
            let key = p.string()?;
            p.expect(':')?;
            match key.as_str() {
                "descr" => descr = Some(p.string()?),
                "fortran_order" => order = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                other => return Err(NpyError::Format(format!("unknown header key '{other}'"))),
            }
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        match (descr, shape, order) {
            (Some(descr), Some(shape), Some(_)) => Ok(Header {
                descr,
                shape,
                data_offset: start + len,
            }),
            _ => Err(bad("header lacks 'descr', 'fortran_order' or 'shape'")),
        }
    }
}

/// A cursor over the Python literal of an `.npy` header.
struct Literal<'a> {
    s: &'a str,
}

impl Literal<'_> {
    fn error(&self) -> NpyError {
        let near: String = self.s.chars().take(20).collect();
        NpyError::Format(format!("cannot parse the header near '{near}'"))
    }

    /// Skips white space, then consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.s = self.s.trim_start();
        match self.s.strip_prefix(c) {
            Some(rest) => {
                self.s = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// A quoted string without escapes.
    fn string(&mut self) -> Result<String, NpyError> {
        self.s = self.s.trim_start();
        let quote = self
            .s
            .chars()
            .next()
            .filter(|&q| q == '\'' || q == '"')
            .ok_or_else(|| self.error())?;
        let body = &self.s[1..];
        let end = body.find(quote).ok_or_else(|| self.error())?;
        self.s = &body[end + 1..];
        Ok(body[..end].to_string())
    }

    fn boolean(&mut self) -> Result<bool, NpyError> {
        self.s = self.s.trim_start();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.s.strip_prefix(word) {
                self.s = rest;
                return Ok(value);
            }
        }
        Err(self.error())
    }

    /// A tuple of non-negative integers: `()`, `(3,)`, `(2, 3)`.
    fn tuple(&mut self) -> Result<Vec<usize>, NpyError> {
        self.expect('(')?;
        let mut dims = Vec::new();
        while !self.eat(')') {
            self.s = self.s.trim_start();
            let digits = self
                .s
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(self.s.len());
            let dim = self.s[..digits].parse().map_err(|_| self.error())?;
            self.s = self.s[digits..]
                .strip_prefix('L')
                .unwrap_or(&self.s[digits..]);
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.npy` v1.0 file the way numpy writes it: header padded with spaces to a multiple of 64
    /// and ended by a newline.
    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le_f32(x: &[f32]) -> Vec<u8> {
        x.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_float32_c_order() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &le_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]),
        );
        let a = decode_f32(&bytes).unwrap();
        assert_eq!(
            a,
            NpyArray {
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]
            }
        );
    }

    #[test]
    fn reads_float64_big_endian_and_fortran_order() {
        // Column-major [[1, 2, 3], [4, 5, 6]] is stored 1, 4, 2, 5, 3, 6.
        let data: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let bytes = npy(
            "{\"descr\": \">f8\", \"fortran_order\": True, \"shape\": (2,3)}",
            &data,
        );
        assert_eq!(
            decode_f32(&bytes).unwrap().data,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn reads_scalars_and_one_dimensional_arrays() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            &le_f32(&[7.0]),
        );
        assert_eq!(
            decode_f32(&bytes).unwrap(),
            NpyArray {
                shape: vec![],
                data: vec![7.0]
            }
        );
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &le_f32(&[7.0, 8.0]),
        );
        assert_eq!(decode_f32(&bytes).unwrap().shape, vec![2]);
    }

    #[test]
    fn rejects_other_dtypes_by_name() {
        let bytes = npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        let err = decode_f32(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported dtype '<i8': heq-run reads float32 or float64 .npy files"
        );
    }

    #[test]
    fn huge_shapes_fail_before_allocating() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            &[0; 8],
        );
        let err = decode_f32(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the .npy header announces shape [4294967296, 4294967296], but the file holds 8 data bytes"
        );
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &le_f32(&[1.0, 2.0]),
        );
        assert!(matches!(
            decode_f32(&bytes),
            Err(NpyError::Length { actual: 8, .. })
        ));
    }

    #[test]
    fn damaged_files_are_errors() {
        let good = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &le_f32(&[1.0, 2.0]),
        );
        for len in 0..good.len() {
            assert!(
                decode_f32(&good[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        for pos in 0..good.len() - 8 {
            let mut b = good.clone();
            b[pos] ^= 0x5a;
            // Either an error or (a flipped padding byte) the same array; never a panic.
            if let Ok(a) = decode_f32(&b) {
                assert_eq!(a.data, vec![1.0, 2.0], "flip at {pos}");
            }
        }
        let err = decode_f32(b"PK\x03\x04 an npz").unwrap_err();
        assert_eq!(err.to_string(), "not an .npy file (bad magic)");
    }

    #[test]
    fn write_then_read() {
        let dir = std::env::temp_dir().join(format!("heq-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("y.npy");
        write(
            &path,
            NpyArray {
                shape: vec![3],
                data: vec![1.5f32, -2.0, 0.0],
            },
        )
        .unwrap();
        assert_eq!(read_f32(&path).unwrap().data, vec![1.5, -2.0, 0.0]);
        let err = write(
            &path,
            NpyArray {
                shape: vec![2],
                data: vec![1i32, 2, 3],
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "3 elements do not fill the shape [2]");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
