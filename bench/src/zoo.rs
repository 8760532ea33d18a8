//! The model zoo: architecture-shaped QDQ models with seeded random weights.
//!
//! Layer shapes follow the papers (ResNet: He et al. 2016, CIFAR variant with 1×1 projection
//! shortcuts; MobileNetV2: Sandler et al. 2018; SqueezeNet 1.0: Iandola et al. 2016); the
//! weights are He-uniform with a random per-channel gain and bias standing for a folded
//! BatchNorm, so the models compute nothing meaningful but have the layer shapes, weight
//! distributions and quantization patterns of the real networks. Scales are set analytically
//! from an estimate of each activation's second moment: weights are scaled so that every
//! pre-activation has about unit variance (what the folded BatchNorm does), residual sums add
//! second moments, and the clipping ranges are a few standard deviations (ReLU outputs
//! `[0, 6σ]` at 8 bits, `[0, 4σ]` at 4 bits, `[0, 2σ]` at 2 bits; outputs without ReLU `±2/3`
//! of that). In W4A4 and W2A2 the first and the last linear layer keep 8-bit weights and an
//! 8-bit input.

use crate::onnx::{Act, ActQuant, ConvAttrs, GraphBuilder, QuantWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use tract_onnx::pb::ModelProto;

/// A network architecture of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Arch {
    /// ResNet-20 for CIFAR-10 (32×32×3): 3 stages of 16/32/64 channels, 3 basic blocks each.
    #[value(name = "resnet20")]
    ResNet20,
    /// ResNet-32 for CIFAR-10: as ResNet-20 with 5 basic blocks per stage.
    #[value(name = "resnet32")]
    ResNet32,
    /// ResNet-18 for CIFAR-10: 3×3 stem, no max pool, 4 stages of 64/128/256/512, 2 blocks each.
    #[value(name = "resnet18")]
    ResNet18Cifar,
    /// MobileNetV2 (width 1.0) for Tiny-ImageNet (64×64×3, 200 classes), stride-1 stem.
    #[value(name = "mobilenetv2")]
    MobileNetV2,
    /// SqueezeNet 1.0 for ImageNet (224×224×3, 1000 classes).
    #[value(name = "squeezenet")]
    SqueezeNet,
    /// ResNet-50 (v1.5, stride in the 3×3 conv) for ImageNet (224×224×3, 1000 classes).
    #[value(name = "resnet50")]
    ResNet50,
}

impl Arch {
    /// Every architecture, smallest first.
    pub const ALL: [Arch; 6] = [
        Arch::ResNet20,
        Arch::ResNet32,
        Arch::ResNet18Cifar,
        Arch::MobileNetV2,
        Arch::SqueezeNet,
        Arch::ResNet50,
    ];

    /// Short lower-case name (file stems, the `--arch` value).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet20 => "resnet20",
            Arch::ResNet32 => "resnet32",
            Arch::ResNet18Cifar => "resnet18",
            Arch::MobileNetV2 => "mobilenetv2",
            Arch::SqueezeNet => "squeezenet",
            Arch::ResNet50 => "resnet50",
        }
    }

    /// Input shape per sample `[C, H, W]`.
    pub fn input_shape(self) -> [usize; 3] {
        match self {
            Arch::ResNet20 | Arch::ResNet32 | Arch::ResNet18Cifar => [3, 32, 32],
            Arch::MobileNetV2 => [3, 64, 64],
            Arch::SqueezeNet | Arch::ResNet50 => [3, 224, 224],
        }
    }

    /// Number of classes (CIFAR-10, Tiny-ImageNet, ImageNet).
    pub fn classes(self) -> usize {
        match self {
            Arch::ResNet20 | Arch::ResNet32 | Arch::ResNet18Cifar => 10,
            Arch::MobileNetV2 => 200,
            Arch::SqueezeNet | Arch::ResNet50 => 1000,
        }
    }
}

/// Weight and activation precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Precision {
    /// int8 weights (symmetric, per channel), uint8 activations; opset 13.
    #[value(name = "w8a8")]
    W8A8,
    /// int4 weights, uint4 activations, first and last layer 8-bit; opset 21.
    #[value(name = "w4a4")]
    W4A4,
    /// Ternary weights in int2 containers, uint2 activations, first and last layer 8-bit;
    /// opset 25.
    #[value(name = "w2a2")]
    W2A2,
}

impl Precision {
    /// Every precision, widest first.
    pub const ALL: [Precision; 3] = [Precision::W8A8, Precision::W4A4, Precision::W2A2];

    /// Short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::W8A8 => "w8a8",
            Precision::W4A4 => "w4a4",
            Precision::W2A2 => "w2a2",
        }
    }

    /// Weight bits of the inner layers.
    pub fn weight_bits(self) -> u32 {
        match self {
            Precision::W8A8 => 8,
            Precision::W4A4 => 4,
            Precision::W2A2 => 2,
        }
    }

    /// Activation bits of the inner layers.
    pub fn act_bits(self) -> u32 {
        self.weight_bits()
    }

    /// The default-domain opset: the first one that has the integer types used.
    pub fn opset(self) -> i64 {
        match self {
            Precision::W8A8 => 13,
            Precision::W4A4 => 21,
            Precision::W2A2 => 25,
        }
    }
}

/// The model name: `<arch>_<precision>`, e.g. `resnet20_w4a4`.
pub fn model_name(arch: Arch, precision: Precision) -> String {
    format!("{}_{}", arch.name(), precision.name())
}

/// Range of the logits.
const LOGIT_RANGE: f32 = 8.0;

/// Clipping range, in standard deviations of the pre-activation, of a ReLU output quantized
/// to `bits` bits: `[0, 6σ]` at 8 bits (ReLU6), narrower at low widths, as clipping ranges
/// learnt by low-bit quantization-aware training are; outputs without ReLU use `±2/3` of it.
fn clip_range(bits: u32) -> f32 {
    match bits {
        ..=2 => 2.0,
        3..=4 => 4.0,
        _ => 6.0,
    }
}

/// Builds one model. The same arguments give the same model, byte for byte.
pub fn build(arch: Arch, precision: Precision, seed: u64) -> ModelProto {
    let mut net = Net {
        g: GraphBuilder::new(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        precision,
        m2: HashMap::new(),
    };
    let x = net
        .g
        .input("input", &arch.input_shape(), ActQuant::signed(8, 1.0));
    // Inputs uniform over [−1, 1].
    let x = net.track(x, 1.0 / 3.0);
    let out = match arch {
        Arch::ResNet20 => net.resnet_cifar(&x, &[16, 32, 64], 3, arch.classes()),
        Arch::ResNet32 => net.resnet_cifar(&x, &[16, 32, 64], 5, arch.classes()),
        Arch::ResNet18Cifar => net.resnet_cifar(&x, &[64, 128, 256, 512], 2, arch.classes()),
        Arch::MobileNetV2 => net.mobilenet_v2(&x, arch.classes()),
        Arch::SqueezeNet => net.squeezenet(&x, arch.classes()),
        Arch::ResNet50 => net.resnet50(&x, arch.classes()),
    };
    net.g
        .finish(&model_name(arch, precision), &out, precision.opset())
}

/// Where a layer sits: the first and last linear layers keep 8-bit weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Edge,
    Inner,
}

/// The activation after a linear layer and the width of its quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    /// ReLU (ReLU6 in MobileNetV2): unsigned, zero point 0.
    Relu(u32),
    /// None: asymmetric, zero point `2^(bits−1)`.
    Linear(u32),
}

impl Out {
    /// Quantization of this output for a pre-activation of second moment `m2`, and the second
    /// moment after the activation (halved by a ReLU).
    fn quant(self, m2: f32) -> (ActQuant, f32) {
        let sigma = m2.sqrt();
        match self {
            Out::Relu(bits) => (
                ActQuant::relu_range(bits, clip_range(bits) * sigma),
                m2 / 2.0,
            ),
            Out::Linear(bits) => (
                ActQuant::signed(bits, clip_range(bits) * sigma * 2.0 / 3.0),
                m2,
            ),
        }
    }
}

/// Second moment of a pre-activation: unit variance times the mean squared gain (`E[g²]` of
/// `g ~ U[0.5, 1.5]`) plus the mean squared bias (`b ~ U[−0.1, 0.1]`).
const PRE_M2: f32 = 1.0 + 1.0 / 12.0 + 0.01 / 3.0;

/// `k`×`k` convolution attributes with "same" padding.
fn same(kernel: usize, stride: usize, groups: usize) -> ConvAttrs {
    ConvAttrs {
        kernel,
        stride,
        pad: kernel / 2,
        groups,
    }
}

/// The graph under construction with its weight generator and the estimated second moment of
/// every activation (by tensor name), which sets the weight scale of the next layer (as a
/// folded BatchNorm would) and the range of the residual sums.
struct Net {
    g: GraphBuilder,
    rng: ChaCha8Rng,
    precision: Precision,
    m2: HashMap<String, f32>,
}

impl Net {
    fn weight_bits(&self, place: Place) -> u32 {
        match place {
            Place::Edge => 8,
            Place::Inner => self.precision.weight_bits(),
        }
    }

    /// ReLU output of the inner width.
    fn relu(&self) -> Out {
        Out::Relu(self.precision.act_bits())
    }

    /// Output without activation, of the inner width.
    fn linear(&self) -> Out {
        Out::Linear(self.precision.act_bits())
    }

    /// Estimated second moment of an activation (1 if unknown).
    fn m2(&self, x: &Act) -> f32 {
        self.m2.get(&x.name).copied().unwrap_or(1.0)
    }

    fn track(&mut self, x: Act, m2: f32) -> Act {
        self.m2.insert(x.name.clone(), m2);
        x
    }

    /// Uniform weights `[m, fan_in]` scaled so that the output has about unit variance on an
    /// input of second moment `m2_in` (He scaling with the folded BatchNorm's normalization),
    /// with a per-output-channel gain in `[0.5, 1.5]` (the BatchNorm's γ) and a bias in
    /// `[−0.1, 0.1]`.
    fn params(&mut self, dims: Vec<usize>, bits: u32, m2_in: f32) -> (QuantWeights, Vec<f32>) {
        let m = dims[0];
        let fan_in: usize = dims[1..].iter().product();
        let bound = (3.0 / (fan_in as f32 * m2_in)).sqrt();
        let mut w = Vec::with_capacity(m * fan_in);
        for _ in 0..m {
            let gain: f32 = self.rng.random_range(0.5..1.5);
            w.extend((0..fan_in).map(|_| gain * self.rng.random_range(-bound..bound)));
        }
        let bias = (0..m).map(|_| self.rng.random_range(-0.1..0.1)).collect();
        (QuantWeights::quantize(dims, bits, &w), bias)
    }

    fn conv(
        &mut self,
        name: &str,
        x: &Act,
        out_channels: usize,
        a: ConvAttrs,
        place: Place,
        out: Out,
    ) -> Act {
        let dims = vec![out_channels, x.shape[0] / a.groups, a.kernel, a.kernel];
        let (w, b) = self.params(dims, self.weight_bits(place), self.m2(x));
        let (q, m2) = out.quant(PRE_M2);
        let y = self.g.conv(name, x, &w, &b, a, q);
        self.track(y, m2)
    }

    /// Residual sum `a + b` (independent terms: second moments add), followed by `out`.
    fn add(&mut self, name: &str, a: &Act, b: &Act, out: Out) -> Act {
        let (q, m2_out) = out.quant(self.m2(a) + self.m2(b));
        let y = self.g.add(name, a, b, q);
        self.track(y, m2_out)
    }

    /// Global average pool of a ReLU output to 8 bits over `[0, 4·sqrt(E[x²])]`: channel
    /// means of residual streams are not small against their spread. The second moment is kept.
    fn global_average_pool(&mut self, name: &str, x: &Act) -> Act {
        let m2 = self.m2(x);
        let q = ActQuant::relu_range(8, 4.0 * m2.sqrt());
        let y = self.g.global_average_pool(name, x, q);
        self.track(y, m2)
    }

    /// Global average pool, Flatten, Gemm to the logits (8-bit weights).
    fn head(&mut self, x: &Act, classes: usize) -> Act {
        let p = self.global_average_pool("gap", x);
        let f = self.g.flatten("flatten", &p);
        let (w, b) = self.params(vec![classes, f.shape[0]], 8, self.m2(&p));
        self.g
            .gemm("fc", &f, &w, &b, ActQuant::signed(8, LOGIT_RANGE))
    }

    /// The residual shortcut: identity, or a 1×1 projection when the shape changes.
    fn shortcut(&mut self, name: &str, x: &Act, out: usize, stride: usize) -> Act {
        if stride != 1 || x.shape[0] != out {
            let n = format!("{name}.downsample");
            let linear = self.linear();
            self.conv(&n, x, out, same(1, stride, 1), Place::Inner, linear)
        } else {
            x.clone()
        }
    }

    /// ReLU(conv-conv + shortcut) with a 1×1 projection when the shape changes.
    fn basic_block(&mut self, name: &str, x: &Act, out: usize, stride: usize) -> Act {
        let (relu, linear) = (self.relu(), self.linear());
        let y = self.conv(
            &format!("{name}.conv1"),
            x,
            out,
            same(3, stride, 1),
            Place::Inner,
            relu,
        );
        let y = self.conv(
            &format!("{name}.conv2"),
            &y,
            out,
            same(3, 1, 1),
            Place::Inner,
            linear,
        );
        let sc = self.shortcut(name, x, out, stride);
        self.add(&format!("{name}.add"), &y, &sc, relu)
    }

    fn resnet_cifar(&mut self, x: &Act, widths: &[usize], blocks: usize, classes: usize) -> Act {
        let relu = self.relu();
        let mut y = self.conv("conv1", x, widths[0], same(3, 1, 1), Place::Edge, relu);
        for (s, &w) in widths.iter().enumerate() {
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                y = self.basic_block(&format!("layer{}.{b}", s + 1), &y, w, stride);
            }
        }
        self.head(&y, classes)
    }

    /// ReLU(1×1 – 3×3 (strided) – 1×1 ×4 + shortcut).
    fn bottleneck(&mut self, name: &str, x: &Act, width: usize, stride: usize) -> Act {
        let (relu, linear) = (self.relu(), self.linear());
        let out = 4 * width;
        let y = self.conv(
            &format!("{name}.conv1"),
            x,
            width,
            same(1, 1, 1),
            Place::Inner,
            relu,
        );
        let y = self.conv(
            &format!("{name}.conv2"),
            &y,
            width,
            same(3, stride, 1),
            Place::Inner,
            relu,
        );
        let y = self.conv(
            &format!("{name}.conv3"),
            &y,
            out,
            same(1, 1, 1),
            Place::Inner,
            linear,
        );
        let sc = self.shortcut(name, x, out, stride);
        self.add(&format!("{name}.add"), &y, &sc, relu)
    }

    fn resnet50(&mut self, x: &Act, classes: usize) -> Act {
        let relu = self.relu();
        let y = self.conv("conv1", x, 64, same(7, 2, 1), Place::Edge, relu);
        let m2 = self.m2(&y);
        let y = self.g.max_pool("maxpool", &y, 3, 2, [1; 4]);
        let mut y = self.track(y, m2);
        for (s, (&width, &blocks)) in [64, 128, 256, 512].iter().zip(&[3, 4, 6, 3]).enumerate() {
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                y = self.bottleneck(&format!("layer{}.{b}", s + 1), &y, width, stride);
            }
        }
        self.head(&y, classes)
    }

    /// Inverted residual: 1×1 expansion (unless `t = 1`), depthwise 3×3, linear 1×1
    /// projection; identity Add (no ReLU) when the shape is kept.
    fn inverted_residual(&mut self, name: &str, x: &Act, t: usize, out: usize, s: usize) -> Act {
        let (relu6, linear) = (self.relu(), self.linear());
        let hidden = x.shape[0] * t;
        let y = if t == 1 {
            x.clone()
        } else {
            let n = format!("{name}.expand");
            self.conv(&n, x, hidden, same(1, 1, 1), Place::Inner, relu6)
        };
        let n = format!("{name}.dw");
        let y = self.conv(&n, &y, hidden, same(3, s, hidden), Place::Inner, relu6);
        let n = format!("{name}.project");
        let y = self.conv(&n, &y, out, same(1, 1, 1), Place::Inner, linear);
        if s == 1 && x.shape[0] == out {
            self.add(&format!("{name}.add"), x, &y, linear)
        } else {
            y
        }
    }

    fn mobilenet_v2(&mut self, x: &Act, classes: usize) -> Act {
        // (expansion t, channels c, repeats n, first stride s), Sandler et al. Table 2.
        const SETTINGS: [(usize, usize, usize, usize); 7] = [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ];
        let relu6 = self.relu();
        let mut y = self.conv("features.0", x, 32, same(3, 1, 1), Place::Edge, relu6);
        let mut i = 1;
        for (t, c, n, s) in SETTINGS {
            for r in 0..n {
                let stride = if r == 0 { s } else { 1 };
                y = self.inverted_residual(&format!("features.{i}"), &y, t, c, stride);
                i += 1;
            }
        }
        let n = format!("features.{i}");
        let y = self.conv(&n, &y, 1280, same(1, 1, 1), Place::Inner, relu6);
        self.head(&y, classes)
    }

    /// Fire module: 1×1 squeeze, then 1×1 and 3×3 expands concatenated; the expands are
    /// quantized with `out` (one quantization for both, as Concat needs).
    fn fire(&mut self, name: &str, x: &Act, sq: usize, e: usize, out: Out) -> Act {
        let relu = self.relu();
        let s = self.conv(
            &format!("{name}.squeeze"),
            x,
            sq,
            same(1, 1, 1),
            Place::Inner,
            relu,
        );
        let a = self.conv(
            &format!("{name}.expand1x1"),
            &s,
            e,
            same(1, 1, 1),
            Place::Inner,
            out,
        );
        let b = self.conv(
            &format!("{name}.expand3x3"),
            &s,
            e,
            same(3, 1, 1),
            Place::Inner,
            out,
        );
        let m2 = self.m2(&a);
        let y = self.g.concat(&format!("{name}.concat"), &[&a, &b]);
        self.track(y, m2)
    }

    /// Max pool of a ReLU output (the second moment is kept, an underestimate).
    fn max_pool(&mut self, name: &str, x: &Act, pads: [usize; 4]) -> Act {
        let m2 = self.m2(x);
        let y = self.g.max_pool(name, x, 3, 2, pads);
        self.track(y, m2)
    }

    fn squeezenet(&mut self, x: &Act, classes: usize) -> Act {
        let relu = self.relu();
        // conv1 is 7×7 stride 2 without padding: 224 → 109.
        let a = ConvAttrs {
            kernel: 7,
            stride: 2,
            pad: 0,
            groups: 1,
        };
        let y = self.conv("features.0", x, 96, a, Place::Edge, relu);
        let y = self.max_pool("features.2", &y, [0; 4]);
        let y = self.fire("features.3", &y, 16, 64, relu);
        let y = self.fire("features.4", &y, 16, 64, relu);
        let y = self.fire("features.5", &y, 32, 128, relu);
        // ceil_mode over 54 rows = one extra row/column of padding (ReLU outputs are ≥ 0).
        let y = self.max_pool("features.6", &y, [0, 0, 1, 1]);
        let y = self.fire("features.7", &y, 32, 128, relu);
        let y = self.fire("features.8", &y, 48, 192, relu);
        let y = self.fire("features.9", &y, 48, 192, relu);
        let y = self.fire("features.10", &y, 64, 256, relu);
        let y = self.max_pool("features.11", &y, [0; 4]);
        // The last conv is 8-bit with an 8-bit input.
        let y = self.fire("features.12", &y, 64, 256, Out::Relu(8));
        let y = self.conv(
            "classifier.1",
            &y,
            classes,
            same(1, 1, 1),
            Place::Edge,
            Out::Relu(8),
        );
        let p = self.global_average_pool("classifier.3", &y);
        self.g.flatten("flatten", &p)
    }
}
