//! Observation and action spaces, as in Gymnasium: `Discrete(n)` and `Box`.

use std::fmt;

use crate::rng::NumpyRng;

/// The element type of a `Box` space: how its values are stored and sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BoxDtype {
    /// 32-bit floats (Gymnasium's `float32`).
    #[default]
    F32,
    /// Bytes, the integers `0..=255` (Gymnasium's `uint8`): pixel frames,
    /// and MinAtar's 0/1 planes. Envs still write them as `f32` values
    /// through [`crate::Env`]; actors send and replay stores one byte each.
    U8,
}

impl BoxDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            BoxDtype::F32 => "f32",
            BoxDtype::U8 => "u8",
        }
    }
}

/// A space of observations or actions.
#[derive(Clone, Debug, PartialEq)]
pub enum Space {
    /// The integers `0..n` (Gymnasium's `Discrete(n)` with `start = 0`).
    Discrete(usize),
    /// Vectors between `low` and `high` (element-wise, flattened in
    /// row-major order), of the given `shape` and element type.
    Box {
        low: Vec<f32>,
        high: Vec<f32>,
        shape: Vec<usize>,
        dtype: BoxDtype,
    },
}

impl Space {
    /// An `f32` `Box` of the given shape from flat `low` / `high` bounds.
    ///
    /// Panics if the bounds do not hold one value per element of `shape`:
    /// spaces are built by env code, never from user input.
    pub fn bounded(low: Vec<f32>, high: Vec<f32>, shape: Vec<usize>) -> Space {
        let n: usize = shape.iter().product();
        assert!(
            low.len() == n && high.len() == n,
            "Box bounds must have one value per element of the shape"
        );
        Space::Box {
            low,
            high,
            shape,
            dtype: BoxDtype::F32,
        }
    }

    /// A `u8` `Box` of the given shape with the same bounds everywhere
    /// (e.g. `0..=1` for MinAtar's planes, `0..=255` for pixel frames).
    pub fn u8_box(low: u8, high: u8, shape: Vec<usize>) -> Space {
        let n: usize = shape.iter().product();
        Space::Box {
            low: vec![f32::from(low); n],
            high: vec![f32::from(high); n],
            shape,
            dtype: BoxDtype::U8,
        }
    }

    /// The element type of a `Box` (`None` for `Discrete`).
    pub fn box_dtype(&self) -> Option<BoxDtype> {
        match self {
            Space::Box { dtype, .. } => Some(*dtype),
            Space::Discrete(_) => None,
        }
    }

    /// A `Box` of shape `[n]` with the same bounds for every element.
    pub fn uniform_box(low: f32, high: f32, n: usize) -> Space {
        Space::bounded(vec![low; n], vec![high; n], vec![n])
    }

    /// How many f32 values one element of this space takes in a flat buffer:
    /// 1 for `Discrete`, the product of the shape for `Box`.
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete(_) => 1,
            Space::Box { shape, .. } => shape.iter().product(),
        }
    }

    /// The shape of a `Box` (`None` for `Discrete`).
    pub fn box_shape(&self) -> Option<&[usize]> {
        match self {
            Space::Box { shape, .. } => Some(shape),
            Space::Discrete(_) => None,
        }
    }

    /// True for `Discrete` spaces.
    pub fn is_discrete(&self) -> bool {
        matches!(self, Space::Discrete(_))
    }

    /// Random elements for a batch of envs, as Gymnasium's
    /// `action_space.sample()`: for `Discrete`, one uniform integer per env
    /// into `discrete`; for `Box`, `flat_dim` values per env into
    /// `continuous`, each uniform within its finite bounds (an unbounded
    /// side is sampled within ±1 of the other, both unbounded within ±1).
    pub fn sample(&self, rng: &mut NumpyRng, discrete: &mut [i64], continuous: &mut [f32]) {
        match self {
            Space::Discrete(n) => {
                for a in discrete.iter_mut() {
                    *a = rng.below(*n as u64) as i64;
                }
            }
            Space::Box { low, high, .. } => {
                for (a, (lo, hi)) in continuous.iter_mut().zip(low.iter().zip(high).cycle()) {
                    let (lo, hi) = (f64::from(*lo), f64::from(*hi));
                    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
                        (true, true) => (lo, hi),
                        (true, false) => (lo, lo + 1.0),
                        (false, true) => (hi - 1.0, hi),
                        (false, false) => (-1.0, 1.0),
                    };
                    *a = rng.uniform(lo, hi) as f32;
                }
            }
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Discrete(n) => write!(f, "Discrete({n})"),
            Space::Box {
                low,
                high,
                shape,
                dtype,
            } => {
                let same = |v: &[f32]| v.windows(2).all(|w| w[0] == w[1] || (w[0].is_nan() && w[1].is_nan()));
                if !low.is_empty() && same(low) && same(high) {
                    write!(f, "Box({}, {}, {:?}", low[0], high[0], shape)?;
                } else {
                    write!(f, "Box({low:?}, {high:?}, {shape:?}")?;
                }
                match dtype {
                    BoxDtype::F32 => write!(f, ")"),
                    BoxDtype::U8 => write!(f, ", u8)"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_dims_and_display() {
        assert_eq!(Space::Discrete(3).flat_dim(), 1);
        let b = Space::uniform_box(-2.0, 2.0, 1);
        assert_eq!(b.flat_dim(), 1);
        assert_eq!(b.to_string(), "Box(-2, 2, [1])");
        let m = Space::bounded(vec![0.0; 6], vec![1.0; 6], vec![2, 3]);
        assert_eq!(m.flat_dim(), 6);
        assert_eq!(Space::Discrete(2).to_string(), "Discrete(2)");
        let mixed = Space::bounded(vec![-1.0, -2.0], vec![1.0, 2.0], vec![2]);
        assert_eq!(mixed.to_string(), "Box([-1.0, -2.0], [1.0, 2.0], [2])");
        let planes = Space::u8_box(0, 1, vec![10, 10, 4]);
        assert_eq!(planes.to_string(), "Box(0, 1, [10, 10, 4], u8)");
        assert_eq!((planes.flat_dim(), planes.box_dtype()), (400, Some(BoxDtype::U8)));
        assert_eq!(m.box_dtype(), Some(BoxDtype::F32));
    }
}
