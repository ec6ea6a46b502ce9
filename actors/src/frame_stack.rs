//! [`FrameStacks`]: each actor's last k frames, stacked as the network
//! takes them (`[model] frame_stack`). A frame of shape `[..., C]` holds
//! P = d / C pixels of C channels; the stack of k frames has shape
//! `[..., k·C]`, frame j (0 = oldest) in channels `j·C .. (j + 1)·C` of
//! every pixel. An episode's first frame fills every slot (Gymnasium's
//! `FrameStackObservation` padding), which is what the learner rebuilds
//! from the unroll's frames (`cml_proto::UnrollLayout::frame_stack`).

/// The stacks of `actors` actors, `[actors, d·k]` f32, allocated once.
#[derive(Clone, Debug)]
pub struct FrameStacks {
    depth: usize,
    frame_dim: usize,
    channels: usize,
    stacked: Vec<f32>,
}

impl FrameStacks {
    /// Stacks of `depth` frames of `frame_shape` for `actors` actors.
    pub fn new(actors: usize, frame_shape: &[usize], depth: usize) -> FrameStacks {
        let frame_dim: usize = frame_shape.iter().product();
        let channels = frame_shape.last().copied().unwrap_or(1).max(1);
        FrameStacks {
            depth,
            frame_dim,
            channels,
            stacked: vec![0.0; actors * frame_dim * depth],
        }
    }

    /// Every actor's stack, `[actors, d·k]`: the network's input.
    pub fn stacked(&self) -> &[f32] {
        &self.stacked
    }

    /// Values of one stack (d·k).
    pub fn stack_dim(&self) -> usize {
        self.frame_dim * self.depth
    }

    fn stack_mut(&mut self, actor: usize) -> &mut [f32] {
        let n = self.stack_dim();
        &mut self.stacked[actor * n..(actor + 1) * n]
    }

    /// Starts `actor`'s stack at an episode's first `frame`: every slot
    /// holds it.
    pub fn start(&mut self, actor: usize, frame: &[f32]) {
        let (c, k) = (self.channels, self.depth);
        let stack = self.stack_mut(actor);
        for (pixel, values) in stack.chunks_exact_mut(k * c).zip(frame.chunks_exact(c)) {
            for slot in pixel.chunks_exact_mut(c) {
                slot.copy_from_slice(values);
            }
        }
    }

    /// Pushes `actor`'s next `frame`; the oldest is dropped.
    pub fn push(&mut self, actor: usize, frame: &[f32]) {
        let (c, k) = (self.channels, self.depth);
        let stack = self.stack_mut(actor);
        for (pixel, values) in stack.chunks_exact_mut(k * c).zip(frame.chunks_exact(c)) {
            pixel.copy_within(c.., 0);
            pixel[(k - 1) * c..].copy_from_slice(values);
        }
    }

    /// Frame `j` (0 = oldest) of `actor`'s stack, into `out` (d values).
    pub fn frame(&self, actor: usize, j: usize, out: &mut [f32]) {
        let (c, k, n) = (self.channels, self.depth, self.stack_dim());
        let stack = &self.stacked[actor * n..(actor + 1) * n];
        for (pixel, values) in stack.chunks_exact(k * c).zip(out.chunks_exact_mut(c)) {
            values.copy_from_slice(&pixel[j * c..(j + 1) * c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_stacked_along_the_channels_oldest_first() {
        // Frames of 2 pixels × 2 channels; frame f has values f·10 + i.
        let frame = |f: u32| -> Vec<f32> { (0..4).map(|i| (f * 10 + i) as f32).collect() };
        let mut stacks = FrameStacks::new(2, &[2, 2], 3);
        stacks.start(1, &frame(1));
        assert_eq!(
            &stacks.stacked()[12..],
            &[10., 11., 10., 11., 10., 11., 12., 13., 12., 13., 12., 13.]
        );
        stacks.push(1, &frame(2));
        stacks.push(1, &frame(3));
        // Pixel 0: frames 1, 2, 3's channels; then pixel 1.
        assert_eq!(
            &stacks.stacked()[12..],
            &[10., 11., 20., 21., 30., 31., 12., 13., 22., 23., 32., 33.]
        );
        stacks.push(1, &frame(4));
        let mut out = [0.0; 4];
        stacks.frame(1, 0, &mut out);
        assert_eq!(out, [20., 21., 22., 23.]);
        stacks.frame(1, 2, &mut out);
        assert_eq!(out, [40., 41., 42., 43.]);
        assert!(stacks.stacked()[..12].iter().all(|&v| v == 0.0), "actor 0 untouched");
        // A flat observation [3] stacks to [6]: frame blocks one after another.
        let mut flat = FrameStacks::new(1, &[3], 2);
        flat.start(0, &[1., 2., 3.]);
        flat.push(0, &[4., 5., 6.]);
        assert_eq!(flat.stacked(), &[1., 2., 3., 4., 5., 6.]);
    }
}
