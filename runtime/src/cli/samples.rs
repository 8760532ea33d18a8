//! The `.npy` samples of a run: reading and checking the input batch, quantizing it, and
//! writing the outputs (the model output after the plan's epilogue, float32 or int64 indices;
//! or the raw revealed int32 integers).

use anyhow::{Context, bail};
use heq_runtime::npy::{self, NpyArray};
use heq_runtime::plan::{ElementKind, Plan, read_plan};
use heq_runtime::reference;
use heq_runtime::reference::epilogue::{self, OutputData};
use std::path::Path;

/// Reads the plan and the input samples; checks the batch shape and rejects NaN and ±inf.
pub fn read_inputs(plan: &Path, input: &Path) -> anyhow::Result<(Plan, NpyArray<f32>)> {
    let plan = read_plan(plan).with_context(|| format!("reading plan {}", plan.display()))?;
    let x = npy::read_f32(input).context("reading the input")?;
    batch_size(&x.shape, &plan.public.input.shape)
        .with_context(|| format!("input {}", input.display()))?;
    if let Some((i, v)) = x.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!(
            "input {}: element {i} is {v}; inputs must be finite numbers",
            input.display()
        );
    }
    Ok((plan, x))
}

/// Centred quantized samples of a batch.
pub fn quantize(plan: &Plan, input: &NpyArray<f32>) -> Vec<Vec<i64>> {
    let p = &plan.public;
    let sample_len = p.input.shape.iter().product::<usize>();
    input
        .data
        .chunks(sample_len.max(1))
        .map(|x| reference::quantize_input(p, x))
        .collect()
}

/// Writes the outputs of every sample from their revealed centred values: the model output
/// (the plan's epilogue applied: float32, or int64 indices), or with `--raw` the revealed
/// integers `q = v + zero_point` as int32, before any epilogue.
pub fn write_outputs(
    path: &Path,
    raw: bool,
    plan: &Plan,
    input_shape: &[usize],
    outputs: &[Vec<i64>],
) -> anyhow::Result<()> {
    let p = &plan.public;
    let batch = batch_size(input_shape, &p.input.shape)?;
    let with_batch = |sample: &[usize]| {
        let mut shape = sample.to_vec();
        if let Some(n) = batch {
            shape.insert(0, n);
        }
        shape
    };
    let written = if raw {
        let zero_point = p.tensors[p.output.tensor.0 as usize].zero_point;
        let data = outputs
            .concat()
            .iter()
            .map(|&v| {
                v.checked_add(zero_point)
                    .and_then(|q| i32::try_from(q).ok())
            })
            .collect::<Option<Vec<i32>>>()
            .context("a quantized output does not fit int32")?;
        let shape = with_batch(&p.output.shape);
        npy::write(path, NpyArray { shape, data })
    } else {
        let output = p
            .epilogue
            .output(&p.output.shape)
            .map_err(anyhow::Error::msg)?;
        let shape = with_batch(&output.shape);
        let (mut floats, mut indices) = (Vec::new(), Vec::new());
        for (i, y) in outputs.iter().enumerate() {
            match epilogue::finish(p, y)
                .with_context(|| format!("sample {i}"))?
                .data
            {
                OutputData::Float(v) => floats.extend(v),
                OutputData::Index(v) => indices.extend(v),
            }
        }
        match output.kind {
            ElementKind::Float => npy::write(
                path,
                NpyArray {
                    shape,
                    data: floats,
                },
            ),
            ElementKind::Index => npy::write(
                path,
                NpyArray {
                    shape,
                    data: indices,
                },
            ),
        }
    };
    written.context("writing the output")
}

/// `None` for one sample of the input shape, `Some(N)` for `[N, ...input shape]`.
fn batch_size(shape: &[usize], sample: &[usize]) -> anyhow::Result<Option<usize>> {
    if shape == sample {
        Ok(None)
    } else if shape.len() == sample.len() + 1 && shape[1..] == *sample {
        Ok(Some(shape[0]))
    } else {
        let dims: Vec<String> = sample.iter().map(ToString::to_string).collect();
        bail!(
            "shape {shape:?} is neither the plan's input shape {sample:?} nor [N, {}]",
            dims.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_shapes() {
        assert_eq!(
            batch_size(&[1, 4, 4], &[1, 4, 4]).expect("one sample"),
            None
        );
        assert_eq!(
            batch_size(&[5, 1, 4, 4], &[1, 4, 4]).expect("batch"),
            Some(5)
        );
        assert_eq!(batch_size(&[0, 3], &[3]).expect("empty batch"), Some(0));
        let err = batch_size(&[4, 4], &[1, 4, 4]).expect_err("wrong shape");
        assert_eq!(
            err.to_string(),
            "shape [4, 4] is neither the plan's input shape [1, 4, 4] nor [N, 1, 4, 4]"
        );
    }
}
