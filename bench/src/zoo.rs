//! The model zoo: architecture-shaped QDQ models with seeded random weights.
//!
//! Layer shapes follow the papers (ResNet: He et al. 2016, CIFAR variant with 1×1 projection
//! shortcuts; MobileNetV2: Sandler et al. 2018; SqueezeNet 1.0: Iandola et al. 2016); the
//! weights are He-uniform with a random per-channel gain and bias standing for a folded
//! BatchNorm, so the models compute nothing meaningful but have the layer shapes, weight
//! distributions and quantization patterns of the real networks. Activation scales are set
//! analytically (ReLU outputs over `[0, 6]`, other outputs over `[−4, 4]`), as if every
//! activation had roughly unit variance. In W4A4 and W2A2 the first and the last linear layer
//! keep 8-bit weights and an 8-bit input.

use crate::onnx::{Act, ActQuant, ConvAttrs, GraphBuilder, QuantWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// Range of the outputs that are not followed by a ReLU (before a residual Add, projections).
const LINEAR_RANGE: f32 = 4.0;
/// Range of the logits.
const LOGIT_RANGE: f32 = 8.0;

/// Builds one model. The same arguments give the same model, byte for byte.
pub fn build(arch: Arch, precision: Precision, seed: u64) -> ModelProto {
    let mut net = Net {
        g: GraphBuilder::new(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        precision,
    };
    let x = net
        .g
        .input("input", &arch.input_shape(), ActQuant::signed(8, 1.0));
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

/// The graph under construction with its weight generator.
struct Net {
    g: GraphBuilder,
    rng: ChaCha8Rng,
    precision: Precision,
}

impl Net {
    fn weight_bits(&self, place: Place) -> u32 {
        match place {
            Place::Edge => 8,
            Place::Inner => self.precision.weight_bits(),
        }
    }

    /// ReLU (or ReLU6) output quantization of the inner activations.
    fn relu(&self) -> ActQuant {
        ActQuant::relu(self.precision.act_bits())
    }

    /// Quantization of inner outputs without a ReLU.
    fn linear(&self) -> ActQuant {
        ActQuant::signed(self.precision.act_bits(), LINEAR_RANGE)
    }

    /// He-uniform weights `[m, fan_in]` with a per-output-channel gain in `[0.5, 1.5]` (folded
    /// BatchNorm) and a bias in `[−0.1, 0.1]`.
    fn params(&mut self, dims: Vec<usize>, bits: u32) -> (QuantWeights, Vec<f32>) {
        let m = dims[0];
        let fan_in: usize = dims[1..].iter().product();
        let bound = (6.0 / fan_in as f32).sqrt();
        let mut w = Vec::with_capacity(m * fan_in);
        for _ in 0..m {
            let gain: f32 = self.rng.random_range(0.5..1.5);
            w.extend((0..fan_in).map(|_| gain * self.rng.random_range(-bound..bound)));
        }
        let bias = (0..m).map(|_| self.rng.random_range(-0.1..0.1)).collect();
        (QuantWeights::quantize(dims, bits, &w), bias)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: &Act,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        place: Place,
        out: ActQuant,
    ) -> Act {
        let dims = vec![out_channels, x.shape[0] / groups, kernel, kernel];
        let (w, b) = self.params(dims, self.weight_bits(place));
        let a = ConvAttrs {
            kernel,
            stride,
            pad: kernel / 2,
            groups,
        };
        self.g.conv(name, x, &w, &b, a, out)
    }

    /// Global average pool to an 8-bit input, Flatten, Gemm to the logits (8-bit weights).
    fn head(&mut self, x: &Act, classes: usize) -> Act {
        let p = self.g.global_average_pool("gap", x, ActQuant::relu(8));
        let f = self.g.flatten("flatten", &p);
        let (w, b) = self.params(vec![classes, f.shape[0]], 8);
        self.g
            .gemm("fc", &f, &w, &b, ActQuant::signed(8, LOGIT_RANGE))
    }

    /// ReLU(conv-conv + shortcut) with a 1×1 projection when the shape changes.
    fn basic_block(&mut self, name: &str, x: &Act, out: usize, stride: usize) -> Act {
        let (relu, linear) = (self.relu(), self.linear());
        let y = self.conv(
            &format!("{name}.conv1"),
            x,
            out,
            3,
            stride,
            1,
            Place::Inner,
            relu,
        );
        let y = self.conv(
            &format!("{name}.conv2"),
            &y,
            out,
            3,
            1,
            1,
            Place::Inner,
            linear,
        );
        let sc = if stride != 1 || x.shape[0] != out {
            let n = format!("{name}.downsample");
            self.conv(&n, x, out, 1, stride, 1, Place::Inner, linear)
        } else {
            x.clone()
        };
        self.g.add(&format!("{name}.add"), &y, &sc, relu)
    }

    fn resnet_cifar(&mut self, x: &Act, widths: &[usize], blocks: usize, classes: usize) -> Act {
        let relu = self.relu();
        let mut y = self.conv("conv1", x, widths[0], 3, 1, 1, Place::Edge, relu);
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
            1,
            1,
            1,
            Place::Inner,
            relu,
        );
        let y = self.conv(
            &format!("{name}.conv2"),
            &y,
            width,
            3,
            stride,
            1,
            Place::Inner,
            relu,
        );
        let y = self.conv(
            &format!("{name}.conv3"),
            &y,
            out,
            1,
            1,
            1,
            Place::Inner,
            linear,
        );
        let sc = if stride != 1 || x.shape[0] != out {
            let n = format!("{name}.downsample");
            self.conv(&n, x, out, 1, stride, 1, Place::Inner, linear)
        } else {
            x.clone()
        };
        self.g.add(&format!("{name}.add"), &y, &sc, relu)
    }

    fn resnet50(&mut self, x: &Act, classes: usize) -> Act {
        let relu = self.relu();
        let y = self.conv("conv1", x, 64, 7, 2, 1, Place::Edge, relu);
        let mut y = self.g.max_pool("maxpool", &y, 3, 2, [1; 4]);
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
            self.conv(&n, x, hidden, 1, 1, 1, Place::Inner, relu6)
        };
        let n = format!("{name}.dw");
        let y = self.conv(&n, &y, hidden, 3, s, hidden, Place::Inner, relu6);
        let n = format!("{name}.project");
        let y = self.conv(&n, &y, out, 1, 1, 1, Place::Inner, linear);
        if s == 1 && x.shape[0] == out {
            self.g.add(&format!("{name}.add"), x, &y, linear)
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
        let mut y = self.conv("features.0", x, 32, 3, 1, 1, Place::Edge, relu6);
        let mut i = 1;
        for (t, c, n, s) in SETTINGS {
            for r in 0..n {
                let stride = if r == 0 { s } else { 1 };
                y = self.inverted_residual(&format!("features.{i}"), &y, t, c, stride);
                i += 1;
            }
        }
        let y = self.conv(
            &format!("features.{i}"),
            &y,
            1280,
            1,
            1,
            1,
            Place::Inner,
            relu6,
        );
        self.head(&y, classes)
    }

    /// Fire module: 1×1 squeeze, then 1×1 and 3×3 expands concatenated; the expands are
    /// quantized with `out` (one quantization for both, as Concat needs).
    fn fire(&mut self, name: &str, x: &Act, sq: usize, e: usize, out: ActQuant) -> Act {
        let relu = self.relu();
        let s = self.conv(
            &format!("{name}.squeeze"),
            x,
            sq,
            1,
            1,
            1,
            Place::Inner,
            relu,
        );
        let a = self.conv(
            &format!("{name}.expand1x1"),
            &s,
            e,
            1,
            1,
            1,
            Place::Inner,
            out,
        );
        let b = self.conv(
            &format!("{name}.expand3x3"),
            &s,
            e,
            3,
            1,
            1,
            Place::Inner,
            out,
        );
        self.g.concat(&format!("{name}.concat"), &[&a, &b])
    }

    fn squeezenet(&mut self, x: &Act, classes: usize) -> Act {
        let relu = self.relu();
        // conv1 is 7×7 stride 2 without padding: 224 → 109.
        let (w, b) = self.params(vec![96, 3, 7, 7], 8);
        let a = ConvAttrs {
            kernel: 7,
            stride: 2,
            pad: 0,
            groups: 1,
        };
        let y = self.g.conv("features.0", x, &w, &b, a, relu);
        let y = self.g.max_pool("features.2", &y, 3, 2, [0; 4]);
        let y = self.fire("features.3", &y, 16, 64, relu);
        let y = self.fire("features.4", &y, 16, 64, relu);
        let y = self.fire("features.5", &y, 32, 128, relu);
        // ceil_mode over 54 rows = one extra row/column of padding (ReLU outputs are ≥ 0).
        let y = self.g.max_pool("features.6", &y, 3, 2, [0, 0, 1, 1]);
        let y = self.fire("features.7", &y, 32, 128, relu);
        let y = self.fire("features.8", &y, 48, 192, relu);
        let y = self.fire("features.9", &y, 48, 192, relu);
        let y = self.fire("features.10", &y, 64, 256, relu);
        let y = self.g.max_pool("features.11", &y, 3, 2, [0; 4]);
        // The last conv is 8-bit with an 8-bit input.
        let y = self.fire("features.12", &y, 64, 256, ActQuant::relu(8));
        let y = self.conv(
            "classifier.1",
            &y,
            classes,
            1,
            1,
            1,
            Place::Edge,
            ActQuant::relu(8),
        );
        let p = self
            .g
            .global_average_pool("classifier.3", &y, ActQuant::relu(8));
        self.g.flatten("flatten", &p)
    }
}
