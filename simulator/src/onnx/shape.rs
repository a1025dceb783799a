//! Shape arithmetic of ONNX's data-movement operators, and the small constant integer tensors a
//! graph computes its shapes with (PyTorch's `x.view(x.size(0), -1)` exports as
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`).
//!
//! Pure functions over shapes (`&[u64]`, one entry per axis, in elements) and 1-D `i64` values;
//! each error is a message for the importer to wrap with the node's name and operator. Semantics
//! from <https://onnx.ai/onnx/operators/> (opset 21): negative axes count from the end, Slice
//! clamps its starts and ends to the axis, and Squeeze without axes drops every axis of size 1.

/// A tensor's shape, in elements per axis.
pub type Shape = Vec<u64>;

/// The highest rank the importer accepts (ONNX models use a handful of axes; the bound keeps a
/// hostile file's shapes, copied from value to value, small).
pub const MAX_RANK: usize = 64;

/// The most values kept of a constant integer tensor (shapes, pads and axes are short).
pub const MAX_INTS: usize = 64;

type R<T> = Result<T, String>;

/// Normalise axis `a` (negative counts from the end) against `rank`.
pub fn axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let n = if a < 0 { a.saturating_add(r) } else { a };
    if (0..r).contains(&n) { Ok(n as usize) } else { Err(format!("axis {a} is out of range for rank {rank}")) }
}

/// Normalised axes, each at most once, and the mask of the axes listed (linear in the rank and
/// the list, so a hostile file's long lists cost no quadratic time).
fn axes(list: &[i64], rank: usize) -> R<(Vec<usize>, Vec<bool>)> {
    let mut mask = vec![false; rank];
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let n = axis(*a, rank)?;
        if std::mem::replace(&mut mask[n], true) {
            return Err(format!("axes {list:?} repeat axis {n}"));
        }
        out.push(n);
    }
    Ok((out, mask))
}

/// Squeeze: drop the listed axes (each of size 1), or every axis of size 1 when `list` is None.
pub fn squeeze(x: &[u64], list: Option<&[i64]>) -> R<Shape> {
    let Some(list) = list else {
        return Ok(x.iter().copied().filter(|d| *d != 1).collect());
    };
    let (drop, mask) = axes(list, x.len())?;
    if let Some(a) = drop.iter().find(|a| x[**a] != 1) {
        return Err(format!("axis {a} of {x:?} has size {}, not 1", x[*a]));
    }
    Ok(x.iter().zip(mask).filter(|(_, m)| !m).map(|(d, _)| *d).collect())
}

/// Unsqueeze: insert axes of size 1 at the listed positions of the output (of rank
/// `x.len() + list.len()`).
pub fn unsqueeze(x: &[u64], list: &[i64]) -> R<Shape> {
    let (_, new) = axes(list, x.len() + list.len())?;
    let mut rest = x.iter();
    Ok(new.into_iter().map(|n| if n { 1 } else { rest.next().copied().unwrap_or(1) }).collect())
}

/// Transpose by `perm` (default: reverse the axes); `perm` must be a permutation of the axes.
pub fn transpose(x: &[u64], perm: Option<&[i64]>) -> R<Shape> {
    let Some(perm) = perm else {
        return Ok(x.iter().rev().copied().collect());
    };
    let p: Option<Vec<usize>> = perm.iter().map(|a| usize::try_from(*a).ok().filter(|a| *a < x.len())).collect();
    match p {
        Some(p) if p.len() == x.len() && axes(perm, x.len()).is_ok() => Ok(p.iter().map(|a| x[*a]).collect()),
        _ => Err(format!("perm {perm:?} is not a permutation of the {} axes of {x:?}", x.len())),
    }
}

/// The indices Slice keeps of an axis of size `dim`: ONNX's rule (negative starts and ends count
/// from the end, then clamp to [0, dim] for a positive step, to [0, dim - 1] and [-1, dim - 1] for
/// a negative one). Returns (first index, step, count).
pub fn slice_axis(dim: u64, start: i64, end: i64, step: i64) -> R<(i128, i128, u64)> {
    if step == 0 {
        return Err("slice step 0 is invalid".into());
    }
    let d = i128::from(dim);
    let norm = |x: i64| if x < 0 { i128::from(x) + d } else { i128::from(x) };
    let (s, e, st) = (norm(start), norm(end), i128::from(step));
    let (s, e) = if st > 0 { (s.clamp(0, d), e.clamp(0, d)) } else { (s.clamp(0, d - 1), e.clamp(-1, d - 1)) };
    let count = if st > 0 { (e - s).max(0).div_euclid(st) + i128::from((e - s).max(0) % st != 0) } else { (s - e).max(0).div_euclid(-st) + i128::from((s - e).max(0) % -st != 0) };
    Ok((s, st, u64::try_from(count).unwrap_or(0)))
}

/// Slice's output shape: `starts`, `ends` and the optional `axes` (default 0, 1, ...) and
/// `steps` (default 1) list one entry per sliced axis.
pub fn slice(x: &[u64], starts: &[i64], ends: &[i64], list: Option<&[i64]>, steps: Option<&[i64]>) -> R<Shape> {
    let n = starts.len();
    let default: Vec<i64> = (0..n as i64).collect();
    let list = list.unwrap_or(&default);
    if ends.len() != n || list.len() != n || steps.is_some_and(|s| s.len() != n) {
        return Err(format!("starts {starts:?}, ends {ends:?}, axes {list:?} and steps {steps:?} differ in length"));
    }
    let mut out = x.to_vec();
    for (i, a) in axes(list, x.len())?.0.into_iter().enumerate() {
        out[a] = slice_axis(x[a], starts[i], ends[i], steps.map_or(1, |s| s[i]))?.2;
    }
    Ok(out)
}

/// The values a 1-D Slice keeps of `values`.
pub fn slice_values(values: &[i64], start: i64, end: i64, step: i64) -> R<Vec<i64>> {
    let (first, st, count) = slice_axis(values.len() as u64, start, end, step)?;
    Ok((0..i128::from(count)).filter_map(|k| usize::try_from(first + k * st).ok().and_then(|i| values.get(i).copied())).collect())
}

/// A reduction's output shape: the listed axes (all when `list` is empty) become 1, or are dropped
/// without `keepdims`.
pub fn reduce(x: &[u64], list: &[i64], keepdims: bool) -> R<Shape> {
    let red = if list.is_empty() { vec![true; x.len()] } else { axes(list, x.len())?.1 };
    Ok(x.iter()
        .zip(red)
        .filter_map(|(d, r)| match (r, keepdims) {
            (false, _) => Some(*d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect())
}

/// Gather's output shape: `data`'s axes before `axis`, then `indices`' shape, then the rest.
pub fn gather(data: &[u64], indices: &[u64], ax: i64) -> R<Shape> {
    let a = axis(ax, data.len())?;
    Ok(data[..a].iter().chain(indices).chain(&data[a + 1..]).copied().collect())
}

/// The values a Gather on axis 0 of the 1-D (or scalar) constant `values` picks; negative indices
/// count from the end.
pub fn gather_values(values: &[i64], indices: &[i64]) -> R<Vec<i64>> {
    let n = values.len() as i64;
    indices
        .iter()
        .map(|i| {
            let j = if *i < 0 { i.saturating_add(n) } else { *i };
            usize::try_from(j).ok().and_then(|j| values.get(j).copied()).ok_or_else(|| format!("index {i} is out of range for {n} values"))
        })
        .collect()
}

/// An elementwise integer operator (Add, Sub, Mul, Div) on constant 1-D or scalar values, with
/// broadcasting of a single value; Div truncates toward zero as ONNX's integer Div does.
pub fn int_binary(op: &str, a: &[i64], b: &[i64]) -> R<Vec<i64>> {
    let n = a.len().max(b.len());
    if !(a.len() == b.len() || a.len() == 1 || b.len() == 1) {
        return Err(format!("constants of {} and {} values do not broadcast", a.len(), b.len()));
    }
    (0..n)
        .map(|i| {
            let (x, y) = (a[i.min(a.len() - 1)], b[i.min(b.len() - 1)]);
            let r = match op {
                "Add" => x.checked_add(y),
                "Sub" => x.checked_sub(y),
                "Mul" => x.checked_mul(y),
                "Div" => x.checked_div(y),
                _ => return Err(format!("{op} is not an integer operator")),
            };
            r.ok_or_else(|| format!("{op} of constants {x} and {y} overflows or divides by zero"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_drops_ones_listed_or_all() {
        assert_eq!(squeeze(&[1, 3, 1, 5], None).unwrap(), vec![3, 5]);
        assert_eq!(squeeze(&[1, 3, 1, 5], Some(&[-2])).unwrap(), vec![1, 3, 5]);
        assert_eq!(squeeze(&[1, 3, 1, 5], Some(&[1])).unwrap_err(), "axis 1 of [1, 3, 1, 5] has size 3, not 1");
        assert!(squeeze(&[1, 3], Some(&[2])).is_err());
        assert!(squeeze(&[1, 1], Some(&[0, -2])).is_err());
    }

    #[test]
    fn unsqueeze_inserts_at_output_positions() {
        assert_eq!(unsqueeze(&[3, 4, 5], &[0, 4]).unwrap(), vec![1, 3, 4, 5, 1]);
        assert_eq!(unsqueeze(&[3, 4, 5], &[2, 0]).unwrap(), vec![1, 3, 1, 4, 5]);
        assert_eq!(unsqueeze(&[3], &[-1]).unwrap(), vec![3, 1]);
        assert_eq!(unsqueeze(&[], &[0]).unwrap(), vec![1]);
        assert!(unsqueeze(&[3], &[2]).is_err());
        assert!(unsqueeze(&[3], &[0, 0]).is_err());
    }

    #[test]
    fn transpose_permutes_or_reverses() {
        assert_eq!(transpose(&[2, 3, 4], None).unwrap(), vec![4, 3, 2]);
        assert_eq!(transpose(&[2, 3, 4], Some(&[1, 0, 2])).unwrap(), vec![3, 2, 4]);
        assert!(transpose(&[2, 3, 4], Some(&[0, 0, 1])).is_err());
        assert!(transpose(&[2, 3, 4], Some(&[0, 1])).is_err());
        assert!(transpose(&[2, 3], Some(&[-1, 0])).is_err());
    }

    #[test]
    fn slice_clamps_and_counts_as_onnx() {
        // The onnx backend's slice cases on a 20x10x5 input.
        assert_eq!(slice(&[20, 10, 5], &[0, 0], &[3, 10], Some(&[0, 1]), Some(&[1, 1])).unwrap(), vec![3, 10, 5]);
        assert_eq!(slice(&[20, 10, 5], &[0], &[-1], Some(&[1]), None).unwrap(), vec![20, 9, 5]); // negative end
        assert_eq!(slice(&[20, 10, 5], &[1], &[1000], Some(&[1]), None).unwrap(), vec![20, 9, 5]); // end clamped
        assert_eq!(slice(&[20, 10, 5], &[1000], &[1000], Some(&[1]), None).unwrap(), vec![20, 0, 5]); // empty
        assert_eq!(slice(&[20, 10, 5], &[20, 10, 4], &[0, 0, 1], Some(&[0, 1, 2]), Some(&[-1, -3, -2])).unwrap(), vec![19, 3, 2]);
        assert_eq!(slice(&[20, 10, 5], &[0, 0, 3], &[20, 10, 4], None, None).unwrap(), vec![20, 10, 1]); // default axes
        assert_eq!(slice(&[20, 10, 5], &[-1], &[i64::MIN], Some(&[1]), Some(&[-1])).unwrap(), vec![20, 10, 5]); // reversed
        assert_eq!(slice(&[4], &[0], &[i64::MAX], None, Some(&[3])).unwrap(), vec![2]);
        assert_eq!(slice(&[4], &[0], &[4], None, Some(&[0])).unwrap_err(), "slice step 0 is invalid");
        assert!(slice(&[4], &[0], &[4, 5], None, None).is_err());
        assert_eq!(slice_values(&[2, 3, 7, 7], 0, 1, 1).unwrap(), vec![2]);
        assert_eq!(slice_values(&[2, 3, 7, 7], -2, i64::MAX, 1).unwrap(), vec![7, 7]);
        assert_eq!(slice_values(&[2, 3, 7, 7], -1, i64::MIN, -2).unwrap(), vec![7, 3]);
    }

    #[test]
    fn reduce_keeps_or_drops_axes() {
        assert_eq!(reduce(&[1, 32, 7, 7], &[2, 3], true).unwrap(), vec![1, 32, 1, 1]);
        assert_eq!(reduce(&[1, 32, 7, 7], &[-1, -2], false).unwrap(), vec![1, 32]);
        assert_eq!(reduce(&[1, 32, 7, 7], &[], false).unwrap(), Vec::<u64>::new());
        assert!(reduce(&[1, 32], &[2], true).is_err());
    }

    #[test]
    fn gather_shapes_and_values() {
        assert_eq!(gather(&[4], &[], 0).unwrap(), Vec::<u64>::new());
        assert_eq!(gather(&[5, 4, 3], &[2, 6], 1).unwrap(), vec![5, 2, 6, 3]);
        assert!(gather(&[5], &[], 1).is_err());
        assert_eq!(gather_values(&[8, 3, 7, 7], &[0, -1]).unwrap(), vec![8, 7]);
        assert!(gather_values(&[8, 3], &[2]).is_err());
    }

    #[test]
    fn integer_arithmetic_broadcasts_and_checks() {
        assert_eq!(int_binary("Mul", &[2, 3], &[4]).unwrap(), vec![8, 12]);
        assert_eq!(int_binary("Div", &[-7], &[2]).unwrap(), vec![-3]);
        assert_eq!(int_binary("Sub", &[1], &[1, 2]).unwrap(), vec![0, -1]);
        assert!(int_binary("Div", &[1], &[0]).is_err());
        assert!(int_binary("Mul", &[i64::MAX], &[2]).is_err());
        assert!(int_binary("Add", &[1, 2], &[1, 2, 3]).is_err());
    }
}
