//! The fused ops as a burn backend extension (`#[backend_extension]`, burn 0.22's supported hook
//! for custom operations; burn-signal uses it for its FFT): an implementation for `Flex` that runs
//! the [`kernels`](super::kernels) on the tensors' slices, and one for `Autodiff<Flex>` with a
//! hand-written backward pass per op, saving only the tensors that backward reads.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn::tensor::{Bytes, DType, Shape};

use super::kernels::bn::{self, After, OutQuant};
use super::kernels::conv::{self, Geometry};
use super::kernels::{depthwise, quant as qk};
use crate::grid::{self, Grid};

/// Batch-norm epsilon (PyTorch's and burn's default).
pub(crate) const EPS: f64 = crate::supernet::BN_EPS;

/// The fused ops. Activations are NHWC `[batch, height, width, channels]`; convolution weights
/// keep burn's `[c_out, c_in / groups, k, k]`; padding is `k / 2`.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// 1x1 convolution, stride 1.
    fn pw_conv(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Depthwise convolution (groups = channels).
    fn dw_conv(x: FloatTensor<Self>, w: FloatTensor<Self>, stride: usize) -> FloatTensor<Self>;
    /// Dense (groups = 1) convolution of any kernel size.
    fn dense_conv(x: FloatTensor<Self>, w: FloatTensor<Self>, stride: usize) -> FloatTensor<Self>;
    /// Training batch norm (batch statistics) then ReLU6 when `relu6`: `(y, mean, biased var)`.
    fn bn_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, relu6: bool) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Training batch norm plus a residual: `(y, mean, biased var)`.
    fn bn_add_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, residual: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Batch norm with given statistics, then ReLU6 when `relu6`.
    fn bn_eval(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, mean: FloatTensor<Self>, var: FloatTensor<Self>, relu6: bool) -> FloatTensor<Self>;
    /// Training batch norm, ReLU6, then the output on the grid `[lo, hi]` with the batch's step
    /// (clip-searched, or max-range): `(y, mean, biased var, step [1])`. The gradient passes where
    /// the ReLU6 passed and, when `clipped_gradient`, inside the clip range.
    fn bn_relu6_quant_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, lo: i32, hi: i32, clip_search: bool, clipped_gradient: bool) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Batch norm with given statistics, ReLU6, then the output on the grid `[lo, hi]` of `step`.
    #[allow(clippy::too_many_arguments)]
    fn bn_relu6_quant_eval(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, mean: FloatTensor<Self>, var: FloatTensor<Self>, step: FloatTensor<Self>, lo: i32, hi: i32, clipped_gradient: bool) -> FloatTensor<Self>;
    /// Batch norm with given statistics plus a residual.
    fn bn_add_eval(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, mean: FloatTensor<Self>, var: FloatTensor<Self>, residual: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x` (viewed as `[steps.len(), -1]`) on the grid `[lo, hi]` of its row's step; the gradient
    /// is the identity, or zero outside the clip range when `clipped_gradient`.
    fn fake_quant(x: FloatTensor<Self>, steps: FloatTensor<Self>, lo: i32, hi: i32, clipped_gradient: bool) -> FloatTensor<Self>;
    /// The step (`[1]`) of a batch on the grid `[lo, hi]`: clip-searched or max-range.
    fn activation_step(x: FloatTensor<Self>, lo: i32, hi: i32, clip_search: bool) -> FloatTensor<Self>;
}

/// A contiguous f32 view of a Flex tensor.
struct View(FlexTensor);

impl View {
    fn of(t: &FlexTensor) -> View {
        View(t.to_contiguous())
    }
    fn f32(&self) -> &[f32] {
        self.0.as_slice::<f32>().expect("the fused ops run on f32 tensors")
    }
    fn dims(&self) -> Vec<usize> {
        self.0.layout().shape().to_vec()
    }
}

fn tensor(v: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(Shape::from(shape.to_vec())), DType::F32)
}

fn geometry(x: &[usize], w: &[usize], stride: usize) -> Geometry {
    Geometry { batch: x[0], in_h: x[1], in_w: x[2], c_in: x[3], c_out: w[0], kernel: w[2], stride }
}

fn out_shape(g: &Geometry) -> [usize; 4] {
    [g.batch, g.out_h(), g.out_w(), g.c_out]
}

/// The forward kernels on Flex tensors (also called by the backward passes below).
pub(crate) mod flex_kernels {
    use super::*;

    pub fn pw(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
        let (x, w) = (View::of(x), View::of(w));
        let (xd, wd) = (x.dims(), w.dims());
        let y = conv::pointwise(x.f32(), xd[3], w.f32(), wd[0]);
        tensor(y, &[xd[0], xd[1], xd[2], wd[0]])
    }

    pub fn pw_dx(dy: &FlexTensor, w: &FlexTensor) -> FlexTensor {
        let (dy, w) = (View::of(dy), View::of(w));
        let (gd, wd) = (dy.dims(), w.dims());
        tensor(conv::pointwise_dx(dy.f32(), gd[3], w.f32(), wd[1]), &[gd[0], gd[1], gd[2], wd[1]])
    }

    pub fn pw_dw(x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
        let (x, dy) = (View::of(x), View::of(dy));
        let (xd, gd) = (x.dims(), dy.dims());
        tensor(conv::pointwise_dw(x.f32(), xd[3], dy.f32(), gd[3]), &[gd[3], xd[3], 1, 1])
    }

    pub fn dw(x: &FlexTensor, w: &FlexTensor, stride: usize) -> FlexTensor {
        let (x, w) = (View::of(x), View::of(w));
        let g = Geometry { c_out: x.dims()[3], ..geometry(&x.dims(), &w.dims(), stride) };
        tensor(depthwise::forward(x.f32(), &g, w.f32()), &out_shape(&g))
    }

    pub fn dw_dx(x_shape: &[usize], dy: &FlexTensor, w: &FlexTensor, stride: usize) -> FlexTensor {
        let (dy, w) = (View::of(dy), View::of(w));
        let g = Geometry { c_out: x_shape[3], ..geometry(x_shape, &w.dims(), stride) };
        tensor(depthwise::dx(dy.f32(), &g, w.f32()), x_shape)
    }

    pub fn dw_dw(x: &FlexTensor, dy: &FlexTensor, w_shape: &[usize], stride: usize) -> FlexTensor {
        let (x, dy) = (View::of(x), View::of(dy));
        let g = Geometry { c_out: x.dims()[3], ..geometry(&x.dims(), w_shape, stride) };
        tensor(depthwise::dw(x.f32(), &g, dy.f32()), w_shape)
    }

    pub fn dense(x: &FlexTensor, w: &FlexTensor, stride: usize) -> FlexTensor {
        let (x, w) = (View::of(x), View::of(w));
        let g = geometry(&x.dims(), &w.dims(), stride);
        tensor(conv::dense(x.f32(), &g, w.f32()), &out_shape(&g))
    }

    pub fn dense_dx(x_shape: &[usize], dy: &FlexTensor, w: &FlexTensor, stride: usize) -> FlexTensor {
        let (dy, w) = (View::of(dy), View::of(w));
        let g = geometry(x_shape, &w.dims(), stride);
        tensor(conv::dense_dx(dy.f32(), &g, w.f32()), x_shape)
    }

    pub fn dense_dw(x: &FlexTensor, dy: &FlexTensor, w_shape: &[usize], stride: usize) -> FlexTensor {
        let (x, dy) = (View::of(x), View::of(dy));
        let g = geometry(&x.dims(), w_shape, stride);
        tensor(conv::dense_dw(x.f32(), &g, dy.f32()), w_shape)
    }

    /// The step of a ReLU6 output on `grid` from the batch: clip-searched on the strided sample,
    /// or max-range.
    fn relu6_step(x: &[f32], c: usize, af: &bn::Affine, grid: Grid, clip_search: bool) -> f32 {
        if clip_search {
            grid::mse_step(&bn::relu6_sample(x, c, af), grid)
        } else {
            (bn::relu6_max(x, c, af) / grid.hi.max(1) as f32).max(grid::MIN_STEP)
        }
    }

    /// Training batch norm: `(y, mean, var, step)`; with `quant` `(grid, clip_search, clipped)`
    /// the ReLU6 output on its grid at the batch's step.
    pub fn bn_train(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, after: After, residual: Option<&FlexTensor>, quant: Option<(Grid, bool, bool)>) -> (FlexTensor, FlexTensor, FlexTensor, Option<OutQuant>) {
        let (x, g, b) = (View::of(x), View::of(gamma), View::of(beta));
        let r = residual.map(View::of);
        let d = x.dims();
        let c = d[3];
        let (mean, var) = bn::statistics(x.f32(), c);
        let af = bn::affine(g.f32(), b.f32(), &mean, &var, EPS);
        let q = quant.map(|(grid, search, clipped)| OutQuant { grid, step: relu6_step(x.f32(), c, &af, grid, search), clipped });
        let y = bn::apply(x.f32(), c, &af, after, r.as_ref().map(|r| r.f32()), q.as_ref());
        (tensor(y, &d), tensor(mean, &[c]), tensor(var, &[c]), q)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn bn_eval(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, mean: &FlexTensor, var: &FlexTensor, after: After, residual: Option<&FlexTensor>, quant: Option<&OutQuant>) -> FlexTensor {
        let (x, g, b, m, v) = (View::of(x), View::of(gamma), View::of(beta), View::of(mean), View::of(var));
        let r = residual.map(View::of);
        let d = x.dims();
        let af = bn::affine(g.f32(), b.f32(), m.f32(), v.f32(), EPS);
        tensor(bn::apply(x.f32(), d[3], &af, after, r.as_ref().map(|r| r.f32()), quant), &d)
    }

    /// `(dx, dgamma, dbeta)` of batch norm in training (`train`) or with constant statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_backward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, mean: &FlexTensor, var: &FlexTensor, after: After, quant: Option<&OutQuant>, dy: &FlexTensor, train: bool) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, g, b, m, v, dy) = (View::of(x), View::of(gamma), View::of(beta), View::of(mean), View::of(var), View::of(dy));
        let d = x.dims();
        let c = d[3];
        let (dx, dg, db) = bn::backward(x.f32(), c, g.f32(), b.f32(), m.f32(), v.f32(), EPS, after, quant, dy.f32(), train);
        (tensor(dx, &d), tensor(dg, &[c]), tensor(db, &[c]))
    }

    /// A step tensor's value.
    pub fn scalar(t: &FlexTensor) -> f32 {
        View::of(t).f32()[0]
    }

    pub fn fake_quant(x: &FlexTensor, steps: &FlexTensor, grid: Grid) -> FlexTensor {
        let (x, s) = (View::of(x), View::of(steps));
        tensor(qk::fake_quant(x.f32(), s.f32(), grid), &x.dims())
    }

    /// `dy` zeroed outside the clip range: in place when `dy` is contiguous and not shared (flex
    /// copies it on write otherwise).
    pub fn clipped_gradient(x: &FlexTensor, steps: &FlexTensor, grid: Grid, dy: FlexTensor) -> FlexTensor {
        let (x, s) = (View::of(x), View::of(steps));
        let mut dy = dy.to_contiguous();
        let (start, end) = dy.layout().contiguous_offsets().expect("a contiguous tensor");
        qk::clip_gradient(x.f32(), s.f32(), grid, &mut dy.storage_mut::<f32>()[start..end]);
        dy
    }

    pub fn activation_step(x: &FlexTensor, grid: Grid, clip_search: bool) -> FlexTensor {
        let x = View::of(x);
        let v = x.f32();
        let step = if clip_search { grid::mse_step(&grid::strided_sample(v, grid::ACTIVATION_SAMPLE), grid) } else { (qk::max_abs(v) / grid.hi.max(1) as f32).max(grid::MIN_STEP) };
        tensor(vec![step], &[1])
    }
}

use flex_kernels as fk;

fn after_of(relu6: bool) -> After {
    if relu6 { After::Relu6 } else { After::None }
}

impl FusedOps for Flex {
    fn pw_conv(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        fk::pw(&x, &w)
    }
    fn dw_conv(x: FlexTensor, w: FlexTensor, stride: usize) -> FlexTensor {
        fk::dw(&x, &w, stride)
    }
    fn dense_conv(x: FlexTensor, w: FlexTensor, stride: usize) -> FlexTensor {
        fk::dense(&x, &w, stride)
    }
    fn bn_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, relu6: bool) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (y, m, v, _) = fk::bn_train(&x, &gamma, &beta, after_of(relu6), None, None);
        (y, m, v)
    }
    fn bn_add_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, residual: FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (y, m, v, _) = fk::bn_train(&x, &gamma, &beta, After::Add, Some(&residual), None);
        (y, m, v)
    }
    fn bn_relu6_quant_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, lo: i32, hi: i32, clip_search: bool, clipped_gradient: bool) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let (y, m, v, q) = fk::bn_train(&x, &gamma, &beta, After::Relu6, None, Some((Grid { lo, hi }, clip_search, clipped_gradient)));
        (y, m, v, tensor(vec![q.expect("a quantized output").step], &[1]))
    }
    fn bn_relu6_quant_eval(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, mean: FlexTensor, var: FlexTensor, step: FlexTensor, lo: i32, hi: i32, clipped_gradient: bool) -> FlexTensor {
        let q = OutQuant { grid: Grid { lo, hi }, step: fk::scalar(&step), clipped: clipped_gradient };
        fk::bn_eval(&x, &gamma, &beta, &mean, &var, After::Relu6, None, Some(&q))
    }
    fn bn_eval(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, mean: FlexTensor, var: FlexTensor, relu6: bool) -> FlexTensor {
        fk::bn_eval(&x, &gamma, &beta, &mean, &var, after_of(relu6), None, None)
    }
    fn bn_add_eval(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, mean: FlexTensor, var: FlexTensor, residual: FlexTensor) -> FlexTensor {
        fk::bn_eval(&x, &gamma, &beta, &mean, &var, After::Add, Some(&residual), None)
    }
    fn fake_quant(x: FlexTensor, steps: FlexTensor, lo: i32, hi: i32, _clipped_gradient: bool) -> FlexTensor {
        fk::fake_quant(&x, &steps, Grid { lo, hi })
    }
    fn activation_step(x: FlexTensor, lo: i32, hi: i32, clip_search: bool) -> FlexTensor {
        fk::activation_step(&x, Grid { lo, hi }, clip_search)
    }
}

type Ad<C> = Autodiff<Flex, C>;
type AdTensor<C> = FloatTensor<Ad<C>>;

fn constant<C: CheckpointStrategy>(t: FlexTensor) -> AdTensor<C> {
    <Ad<C> as AutodiffBackend>::from_inner(t)
}

/// A convolution node: saves its input and weight.
#[derive(Debug)]
struct ConvNode {
    kind: ConvKind,
}

#[derive(Clone, Copy, Debug)]
enum ConvKind {
    Pointwise,
    Depthwise(usize),
    Dense(usize),
}

impl Backward<Flex, 2> for ConvNode {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w) = ops.state;
        let (xs, ws) = (x.layout().shape().to_vec(), w.layout().shape().to_vec());
        if let Some(node) = node_x {
            let dx = match self.kind {
                ConvKind::Pointwise => fk::pw_dx(&dy, &w),
                ConvKind::Depthwise(s) => fk::dw_dx(&xs, &dy, &w, s),
                ConvKind::Dense(s) => fk::dense_dx(&xs, &dy, &w, s),
            };
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_w {
            let dw = match self.kind {
                ConvKind::Pointwise => fk::pw_dw(&x, &dy),
                ConvKind::Depthwise(s) => fk::dw_dw(&x, &dy, &ws, s),
                ConvKind::Dense(s) => fk::dense_dw(&x, &dy, &ws, s),
            };
            grads.register::<Flex>(node.id, dw);
        }
    }
}

fn conv_node<C: CheckpointStrategy>(x: AdTensor<C>, w: AdTensor<C>, kind: ConvKind) -> AdTensor<C> {
    let (xp, xg) = x.into_parts();
    let (wp, wg) = w.into_parts();
    let y = match kind {
        ConvKind::Pointwise => fk::pw(&xp, &wp),
        ConvKind::Depthwise(s) => fk::dw(&xp, &wp, s),
        ConvKind::Dense(s) => fk::dense(&xp, &wp, s),
    };
    match (ConvNode { kind }).prepare::<C>([xg, wg]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((xp, wp), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// A batch-norm node (training or evaluation form); parents x, gamma, beta and, with a residual
/// add, the residual (whose gradient is the output's).
#[derive(Debug)]
struct BnNode {
    after: After,
    train: bool,
    quant: Option<OutQuant>,
}

/// Saved for backward: x, gamma, beta, mean, var.
type BnState = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor);

impl BnNode {
    fn grads(&self, parents: &[Option<NodeId>], state: BnState, dy: FlexTensor, grads: &mut Gradients) {
        let (x, g, b, m, v) = state;
        if parents[..3].iter().any(Option::is_some) {
            let (dx, dg, db) = fk::bn_backward(&x, &g, &b, &m, &v, self.after, self.quant.as_ref(), &dy, self.train);
            for (node, grad) in parents[..3].iter().zip([dx, dg, db]) {
                if let Some(id) = node {
                    grads.register::<Flex>(*id, grad);
                }
            }
        }
        if let Some(Some(id)) = parents.get(3) {
            grads.register::<Flex>(*id, dy);
        }
    }
}

impl Backward<Flex, 3> for BnNode {
    type State = BnState;
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        self.grads(&ops.parents.map(|p| p.map(|n| n.id)), ops.state, dy, grads);
    }
}

impl Backward<Flex, 4> for BnNode {
    type State = BnState;
    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        self.grads(&ops.parents.map(|p| p.map(|n| n.id)), ops.state, dy, grads);
    }
}

/// Record a batch-norm node whose forward gave `y` (statistics `mean`, `var`).
#[allow(clippy::too_many_arguments)]
fn bn_node<C: CheckpointStrategy>(node: BnNode, x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, residual: Option<AdTensor<C>>, mean: FlexTensor, var: FlexTensor, forward: impl FnOnce(&FlexTensor, &FlexTensor, &FlexTensor, Option<&FlexTensor>) -> FlexTensor) -> AdTensor<C> {
    let (xp, xg) = x.into_parts();
    let (gp, gg) = gamma.into_parts();
    let (bp, bg) = beta.into_parts();
    match residual {
        None => {
            let y = forward(&xp, &gp, &bp, None);
            match Backward::<Flex, 3>::prepare::<C>(node, [xg, gg, bg]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((xp, gp, bp, mean, var), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
        Some(r) => {
            let (rp, rg) = r.into_parts();
            let y = forward(&xp, &gp, &bp, Some(&rp));
            match Backward::<Flex, 4>::prepare::<C>(node, [xg, gg, bg, rg]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((xp, gp, bp, mean, var), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    }
}

fn bn_train_node<C: CheckpointStrategy>(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, after: After, residual: Option<AdTensor<C>>, quant: Option<(Grid, bool, bool)>) -> (AdTensor<C>, AdTensor<C>, AdTensor<C>, Option<OutQuant>) {
    // The statistics (and step) come from the same passes as the output; compute them first,
    // then let the node's forward hand the output over.
    let (y, mean, var, q) = fk::bn_train(x.primitive(), gamma.primitive(), beta.primitive(), after, residual.as_ref().map(|r| r.primitive()), quant);
    let out = bn_node::<C>(BnNode { after, train: true, quant: q }, x, gamma, beta, residual, mean.clone(), var.clone(), |_, _, _, _| y);
    (out, constant::<C>(mean), constant::<C>(var), q)
}

#[allow(clippy::too_many_arguments)]
fn bn_eval_node<C: CheckpointStrategy>(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, mean: AdTensor<C>, var: AdTensor<C>, after: After, residual: Option<AdTensor<C>>, quant: Option<OutQuant>) -> AdTensor<C> {
    let (m, v) = (mean.into_primitive(), var.into_primitive());
    let (m2, v2) = (m.clone(), v.clone());
    bn_node::<C>(BnNode { after, train: false, quant }, x, gamma, beta, residual, m, v, move |x, g, b, r| fk::bn_eval(x, g, b, &m2, &v2, after, r, quant.as_ref()))
}

/// A fake-quantization node: identity gradient, or the clipped straight-through estimator.
#[derive(Debug)]
struct QuantNode {
    grid: Grid,
    clipped: bool,
}

impl Backward<Flex, 1> for QuantNode {
    type State = Option<(FlexTensor, FlexTensor)>;
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            let dx = match (&ops.state, self.clipped) {
                (Some((x, steps)), true) => fk::clipped_gradient(x, steps, self.grid, dy),
                _ => dy,
            };
            grads.register::<Flex>(node.id, dx);
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn pw_conv(x: AdTensor<C>, w: AdTensor<C>) -> AdTensor<C> {
        conv_node::<C>(x, w, ConvKind::Pointwise)
    }
    fn dw_conv(x: AdTensor<C>, w: AdTensor<C>, stride: usize) -> AdTensor<C> {
        conv_node::<C>(x, w, ConvKind::Depthwise(stride))
    }
    fn dense_conv(x: AdTensor<C>, w: AdTensor<C>, stride: usize) -> AdTensor<C> {
        conv_node::<C>(x, w, ConvKind::Dense(stride))
    }
    fn bn_train(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, relu6: bool) -> (AdTensor<C>, AdTensor<C>, AdTensor<C>) {
        let (y, m, v, _) = bn_train_node::<C>(x, gamma, beta, after_of(relu6), None, None);
        (y, m, v)
    }
    fn bn_add_train(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, residual: AdTensor<C>) -> (AdTensor<C>, AdTensor<C>, AdTensor<C>) {
        let (y, m, v, _) = bn_train_node::<C>(x, gamma, beta, After::Add, Some(residual), None);
        (y, m, v)
    }
    fn bn_relu6_quant_train(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, lo: i32, hi: i32, clip_search: bool, clipped_gradient: bool) -> (AdTensor<C>, AdTensor<C>, AdTensor<C>, AdTensor<C>) {
        let (y, m, v, q) = bn_train_node::<C>(x, gamma, beta, After::Relu6, None, Some((Grid { lo, hi }, clip_search, clipped_gradient)));
        (y, m, v, constant::<C>(tensor(vec![q.expect("a quantized output").step], &[1])))
    }
    fn bn_relu6_quant_eval(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, mean: AdTensor<C>, var: AdTensor<C>, step: AdTensor<C>, lo: i32, hi: i32, clipped_gradient: bool) -> AdTensor<C> {
        let q = OutQuant { grid: Grid { lo, hi }, step: fk::scalar(step.primitive()), clipped: clipped_gradient };
        bn_eval_node::<C>(x, gamma, beta, mean, var, After::Relu6, None, Some(q))
    }
    fn bn_eval(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, mean: AdTensor<C>, var: AdTensor<C>, relu6: bool) -> AdTensor<C> {
        bn_eval_node::<C>(x, gamma, beta, mean, var, after_of(relu6), None, None)
    }
    fn bn_add_eval(x: AdTensor<C>, gamma: AdTensor<C>, beta: AdTensor<C>, mean: AdTensor<C>, var: AdTensor<C>, residual: AdTensor<C>) -> AdTensor<C> {
        bn_eval_node::<C>(x, gamma, beta, mean, var, After::Add, Some(residual), None)
    }
    fn fake_quant(x: AdTensor<C>, steps: AdTensor<C>, lo: i32, hi: i32, clipped_gradient: bool) -> AdTensor<C> {
        let grid = Grid { lo, hi };
        let (xp, xg) = x.into_parts();
        let sp = steps.into_primitive();
        let y = fk::fake_quant(&xp, &sp, grid);
        match (QuantNode { grid, clipped: clipped_gradient }).prepare::<C>([xg]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(clipped_gradient.then_some((xp, sp)), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
    fn activation_step(x: AdTensor<C>, lo: i32, hi: i32, clip_search: bool) -> AdTensor<C> {
        constant::<C>(fk::activation_step(x.primitive(), Grid { lo, hi }, clip_search))
    }
}
