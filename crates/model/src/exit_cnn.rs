//! A LeNet-like convolutional network with an exit branch after its first convolution block,
//! in the spirit of BranchyNet's B-LeNet (Teerapittayanon et al. 2016).
//!
//! Stage 1 is a 5×5 convolution (padding 2), 2×2 max pooling and ReLU; its branch is a 3×3
//! convolution, 2×2 max pooling, ReLU and a linear classifier. Stage 2 is a second 5×5
//! convolution block and a fully connected layer of `fc_size` units; its head is the final
//! linear classifier.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::exit_engine::ExitStages;

/// Configuration of an [`ExitLenet`].
#[derive(Config, Debug)]
pub struct ExitLenetConfig {
    /// Image height and width; both must be divisible by 4.
    pub image_size: [usize; 2],
    pub classes: usize,
    /// Output channels of the two main convolutions.
    #[config(default = "[8, 16]")]
    pub channels: [usize; 2],
    /// Output channels of the branch convolution.
    #[config(default = "8")]
    pub branch_channels: usize,
    /// Width of the fully connected layer before the last classifier.
    #[config(default = "84")]
    pub fc_size: usize,
}

impl ExitLenetConfig {
    /// Creates the network with random weights.
    pub fn init(&self, device: &Device) -> ExitLenet {
        let [c1, c2] = self.channels;
        let [height, width] = self.image_size;
        let quarter = (height / 4) * (width / 4);
        let conv = |input, output, kernel: usize| {
            let pad = kernel / 2;
            Conv2dConfig::new([input, output], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(device)
        };
        ExitLenet {
            conv1: conv(1, c1, 5),
            branch_conv: conv(c1, self.branch_channels, 3),
            branch_linear: LinearConfig::new(self.branch_channels * quarter, self.classes)
                .init(device),
            conv2: conv(c1, c2, 5),
            fc: LinearConfig::new(c2 * quarter, self.fc_size).init(device),
            classifier: LinearConfig::new(self.fc_size, self.classes).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            height,
            width,
            channels1: c1,
        }
    }

    /// Analytic FLOPs (2 per multiply–add of convolutions and linear layers; pooling, ReLU and
    /// biases are not counted) of the two stages and the two heads.
    pub fn flops(&self) -> (Vec<u64>, Vec<u64>) {
        let [c1, c2] = self.channels.map(|c| c as u64);
        let [height, width] = self.image_size.map(|s| s as u64);
        let half = (height / 2) * (width / 2);
        let quarter = (height / 4) * (width / 4);
        let (branch, fc, classes) = (
            self.branch_channels as u64,
            self.fc_size as u64,
            self.classes as u64,
        );
        let stage1 = 2 * 25 * c1 * height * width;
        let head1 = 2 * c1 * 9 * branch * half + 2 * branch * quarter * classes;
        let stage2 = 2 * c1 * 25 * c2 * half + 2 * c2 * quarter * fc;
        let head2 = 2 * fc * classes;
        (vec![stage1, stage2], vec![head1, head2])
    }
}

/// A two-stage convolutional classifier with an exit after each stage.
#[derive(Module, Debug)]
pub struct ExitLenet {
    conv1: Conv2d,
    branch_conv: Conv2d,
    branch_linear: Linear,
    conv2: Conv2d,
    fc: Linear,
    classifier: Linear,
    pool: MaxPool2d,
    height: usize,
    width: usize,
    channels1: usize,
}

impl ExitStages for ExitLenet {
    fn depth(&self) -> usize {
        2
    }

    /// Stage 0 takes `[rows, height * width]` pixels and returns `[rows, c1 * h/2 * w/2]`;
    /// stage 1 returns `[rows, fc_size]`.
    fn forward_stage(&self, stage: usize, input: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let [rows, _] = input.dims();
        let (half_h, half_w) = (self.height / 2, self.width / 2);
        if stage == 0 {
            let images = input.reshape([rows, 1, self.height, self.width]);
            let block = relu(self.pool.forward(self.conv1.forward(images)));
            let branch = relu(self.pool.forward(self.branch_conv.forward(block.clone())));
            let logits = self.branch_linear.forward(branch.flatten(1, 3));
            (block.flatten(1, 3), logits)
        } else {
            let block = input.reshape([rows, self.channels1, half_h, half_w]);
            let block = relu(self.pool.forward(self.conv2.forward(block)));
            let hidden = relu(self.fc.forward(block.flatten(1, 3)));
            let logits = self.classifier.forward(hidden.clone());
            (hidden, logits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_engine::infer_hard;
    use burn::tensor::Distribution;
    use haltlab_halting::exits::ConfidenceRule;

    // 28×28 input, channels [8, 16], branch 8, fc 84, 10 classes:
    // conv1 2·25·8·784 = 313,600; branch conv 2·8·9·8·196 = 225,792 and linear 2·392·10 = 7,840;
    // conv2 2·8·25·16·196 = 1,254,400 and fc 2·784·84 = 131,712; classifier 2·84·10 = 1,680.
    #[test]
    fn lenet_flops_by_hand() {
        let (stages, heads) = ExitLenetConfig::new([28, 28], 10).flops();
        assert_eq!(stages, vec![313_600, 1_254_400 + 131_712]);
        assert_eq!(heads, vec![225_792 + 7_840, 1_680]);
    }

    #[test]
    fn lenet_shapes_and_compaction() {
        let (device, _generator) = crate::testing::seeded_flex(3);
        let model = ExitLenetConfig::new([28, 28], 10).init(&device);
        let inputs = Tensor::<2>::random([3, 784], Distribution::Default, &device);
        let logits = model.forward_all(inputs.clone());
        assert_eq!(logits.len(), 2);
        assert_eq!(logits[0].dims(), [3, 10]);
        assert_eq!(logits[1].dims(), [3, 10]);
        let all_first = infer_hard(
            &model,
            inputs.clone(),
            &mut ConfidenceRule { threshold: 0.0 },
        );
        assert_eq!(all_first.rows_per_layer, vec![3]);
        let all_last = infer_hard(&model, inputs, &mut ConfidenceRule { threshold: 1.0 });
        assert_eq!(all_last.exit_layer, vec![2, 2, 2]);
    }
}
