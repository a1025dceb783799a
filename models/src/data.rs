//! Image classification data: IDX (MNIST, Fashion-MNIST; gzipped or raw) and CIFAR-10 binary
//! batches, held in memory as bytes, with a fixed seeded validation split and batching into
//! normalised tensors.
//!
//! Default data set: Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it,
//! `/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A data-set error phrased for the user on one line (what, where, and how to fix it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

/// Images stored as bytes (`count x channels x size x size`, channel-major per image) and labels.
#[derive(Clone, Debug)]
pub struct Images {
    pub channels: usize,
    pub size: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub classes: usize,
}

/// Training, validation (a fixed seeded split of the training files) and test images.
#[derive(Clone, Debug)]
pub struct DataSet {
    pub name: String,
    pub train: Images,
    pub valid: Images,
    pub test: Images,
    /// Per-channel mean and standard deviation of the training pixels, in 0..1 units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_bytes(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Images {
        let n = self.image_bytes();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
        }
        Images {
            channels: self.channels,
            size: self.size,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes,
        }
    }

    /// The first `n` images (all when `n` is larger).
    pub fn take(&self, n: usize) -> Images {
        self.subset(&(0..n.min(self.len())).collect::<Vec<_>>())
    }

    /// A batch: normalised images `[b, c, s, s]` and labels `[b]`, on `device`.
    pub fn batch(&self, indices: &[usize], mean: &[f32], std: &[f32], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.image_bytes();
        let plane = self.size * self.size;
        let mut x = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            for (j, &p) in self.pixels[i * n..(i + 1) * n].iter().enumerate() {
                let c = j / plane;
                x.push((p as f32 / 255.0 - mean[c]) / std[c]);
            }
        }
        let b = indices.len();
        let images = Tensor::<4>::from_data(TensorData::new(x, [b, self.channels, self.size, self.size]), device);
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        (images, Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device))
    }
}

/// Read a whole file, un-gzipping when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError(format!("{}: {e}", path.display())))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError(format!("{}: corrupt gzip data ({e})", path.display())))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parse an IDX file: magic `00 00 08 ndims`, big-endian u32 dimensions, then u8 data.
pub fn parse_idx(bytes: &[u8], origin: &str) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bad = |m: &str| DataError(format!("{origin}: not an IDX file of bytes ({m})"));
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("bad magic number"));
    }
    if bytes[2] != 0x08 {
        return Err(bad(&format!("element type 0x{:02x}, expected 0x08 (unsigned byte)", bytes[2])));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        return Err(bad("truncated header"));
    }
    let dims: Vec<usize> =
        (0..nd).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize).collect();
    let count: usize = dims.iter().product();
    if bytes.len() - header != count {
        return Err(bad(&format!("{} data bytes for dimensions {dims:?} ({count} expected): truncated or corrupt", bytes.len() - header)));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Find `stem` in `dir` as `.gz` or raw.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()].into_iter().map(|f| dir.join(f)).find(|p| p.exists())
}

fn load_idx_pair(dir: &Path, prefix: &str) -> Result<Images, DataError> {
    let images = find(dir, &format!("{prefix}-images-idx3-ubyte"));
    let labels = find(dir, &format!("{prefix}-labels-idx1-ubyte"));
    let (Some(images), Some(labels)) = (images, labels) else {
        return Err(DataError(format!(
            "{}: no {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]; for Fashion-MNIST run `sudo apt-get install dataset-fashion-mnist` (or scripts/setup.sh), or pass --data DIR",
            dir.display()
        )));
    };
    let (idims, pixels) = parse_idx(&read_maybe_gz(&images)?, &images.display().to_string())?;
    let (ldims, labels_v) = parse_idx(&read_maybe_gz(&labels)?, &labels.display().to_string())?;
    if idims.len() != 3 || idims[1] != idims[2] {
        return Err(DataError(format!("{}: expected N x S x S images, found dimensions {idims:?}", images.display())));
    }
    if ldims.len() != 1 || ldims[0] != idims[0] {
        return Err(DataError(format!("{}: {:?} labels for {} images", labels.display(), ldims, idims[0])));
    }
    if let Some(l) = labels_v.iter().find(|&&l| l >= 10) {
        return Err(DataError(format!("{}: label {l} outside 0..10", labels.display())));
    }
    Ok(Images { channels: 1, size: idims[1], pixels, labels: labels_v, classes: 10 })
}

/// CIFAR-10 binary batches: records of 1 label byte + 3x32x32 pixel bytes.
fn load_cifar(files: &[PathBuf]) -> Result<Images, DataError> {
    const RECORD: usize = 1 + 3 * 32 * 32;
    let mut img = Images { channels: 3, size: 32, pixels: Vec::new(), labels: Vec::new(), classes: 10 };
    for f in files {
        let bytes = read_maybe_gz(f)?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError(format!("{}: {} bytes is not a whole number of {RECORD}-byte CIFAR-10 records", f.display(), bytes.len())));
        }
        for rec in bytes.chunks_exact(RECORD) {
            if rec[0] >= 10 {
                return Err(DataError(format!("{}: label {} outside 0..10", f.display(), rec[0])));
            }
            img.labels.push(rec[0]);
            img.pixels.extend_from_slice(&rec[1..]);
        }
    }
    Ok(img)
}

/// Split `train` into (train, valid) with `valid` images chosen by a seeded shuffle.
fn split(train: Images, valid: usize, seed: u64) -> (Images, Images) {
    let mut idx: Vec<usize> = (0..train.len()).collect();
    crate::rng::shuffle(&mut idx, seed);
    let valid = valid.min(train.len() / 5);
    let (v, t) = idx.split_at(valid);
    let (mut v, mut t) = (v.to_vec(), t.to_vec());
    v.sort_unstable();
    t.sort_unstable();
    (train.subset(&t), train.subset(&v))
}

fn stats(img: &Images) -> (Vec<f32>, Vec<f32>) {
    let n = img.size * img.size;
    let mut mean = vec![0f64; img.channels];
    let mut sq = vec![0f64; img.channels];
    for (j, &p) in img.pixels.iter().enumerate() {
        let c = (j / n) % img.channels;
        let v = p as f64 / 255.0;
        mean[c] += v;
        sq[c] += v * v;
    }
    let count = (img.len() * n).max(1) as f64;
    let m: Vec<f32> = mean.iter().map(|s| (s / count) as f32).collect();
    let s = sq.iter().zip(&m).map(|(q, m)| ((q / count - (*m as f64).powi(2)).max(1e-6)).sqrt() as f32).collect();
    (m, s)
}

impl DataSet {
    /// Load the data set in `dir`: IDX files (`train-*` and `t10k-*`) or CIFAR-10 binary batches
    /// (`data_batch_*.bin` and `test_batch.bin`). `valid` training images are held out for
    /// validation by a shuffle seeded with `seed`.
    pub fn load(dir: &Path, valid: usize, seed: u64) -> Result<DataSet, DataError> {
        if !dir.is_dir() {
            return Err(DataError(format!(
                "data directory {} does not exist; for Fashion-MNIST run `sudo apt-get install dataset-fashion-mnist` (or scripts/setup.sh), or pass --data DIR",
                dir.display()
            )));
        }
        let (train, test, name) = if dir.join("test_batch.bin").exists() {
            let mut batches: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| DataError(format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with("data_batch_") && f.ends_with(".bin")))
                .collect();
            batches.sort();
            if batches.is_empty() {
                return Err(DataError(format!("{}: test_batch.bin found but no data_batch_*.bin", dir.display())));
            }
            (load_cifar(&batches)?, load_cifar(&[dir.join("test_batch.bin")])?, "cifar-10".to_string())
        } else {
            let name = dir.file_name().and_then(|f| f.to_str()).unwrap_or("idx").to_string();
            (load_idx_pair(dir, "train")?, load_idx_pair(dir, "t10k")?, name)
        };
        if train.size != test.size {
            return Err(DataError(format!("{}: training images are {1}x{1}, test images {2}x{2}", dir.display(), train.size, test.size)));
        }
        // Classes present in the files (labels are 0..classes).
        let classes = train.labels.iter().chain(&test.labels).map(|&l| l as usize + 1).max().unwrap_or(1);
        let (mut train, mut test) = (train, test);
        train.classes = classes;
        test.classes = classes;
        let (train, valid) = split(train, valid, seed);
        let (mean, std) = stats(&train);
        Ok(DataSet { name, train, valid, test, mean, std })
    }

    /// The batch of `images` at `indices`, normalised with the training statistics.
    pub fn batch(&self, images: &Images, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        images.batch(indices, &self.mean, &self.std, device)
    }

    /// A training batch with standard augmentation, seeded: each image mirrored left-right with
    /// probability 1/2 and shifted by up to [`AUGMENT_SHIFT`] pixels in each direction (the
    /// uncovered border filled with black, i.e. a zero pixel), then normalised.
    pub fn augmented_batch(&self, images: &Images, indices: &[usize], seed: u64, device: &Device) -> Tensor<4> {
        let mut rng = crate::rng::Rng::new(seed);
        let (c, size) = (images.channels, images.size);
        let n = c * size * size;
        let mut x = Vec::with_capacity(indices.len() * n);
        let span = 2 * AUGMENT_SHIFT + 1;
        for &i in indices {
            let img = &images.pixels[i * n..(i + 1) * n];
            let flip = rng.below(2) == 1;
            let dy = rng.below(span) as isize - AUGMENT_SHIFT as isize;
            let dx = rng.below(span) as isize - AUGMENT_SHIFT as isize;
            for ch in 0..c {
                for y in 0..size {
                    for xx in 0..size {
                        let sy = y as isize + dy;
                        let sx0 = xx as isize + dx;
                        let sx = if flip { size as isize - 1 - sx0 } else { sx0 };
                        let inside = sy >= 0 && sx >= 0 && (sy as usize) < size && (sx as usize) < size;
                        let p = if inside { img[ch * size * size + sy as usize * size + sx as usize] } else { 0 };
                        x.push((p as f32 / 255.0 - self.mean[ch]) / self.std[ch]);
                    }
                }
            }
        }
        Tensor::<4>::from_data(TensorData::new(x, [indices.len(), c, size, size]), device)
    }
}

/// The largest shift, in pixels, of [`DataSet::augmented_batch`].
pub const AUGMENT_SHIFT: usize = 2;

/// Writers for the small data files the tests create (IDX and CIFAR-10 binary).
pub mod write {
    use std::io::Write;
    use std::path::Path;

    /// Write an IDX file of bytes, gzipped when the name ends in `.gz`.
    pub fn idx(path: &Path, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&(*d as u32).to_be_bytes());
        }
        bytes.extend_from_slice(data);
        if path.extension().is_some_and(|e| e == "gz") {
            let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::fast());
            enc.write_all(&bytes)?;
            enc.finish()?;
            Ok(())
        } else {
            std::fs::write(path, bytes)
        }
    }

    /// Write a CIFAR-10 binary batch of (label, 3x32x32 pixels) records.
    pub fn cifar(path: &Path, records: &[(u8, Vec<u8>)]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for (l, p) in records {
            bytes.push(*l);
            bytes.extend_from_slice(p);
        }
        std::fs::write(path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny IDX data set: image i has every pixel = 10 * label, label = i % 10.
    fn write_idx_set(dir: &Path, n_train: usize, n_test: usize, gz: bool) {
        let ext = if gz { ".gz" } else { "" };
        for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            let pixels: Vec<u8> = labels.iter().flat_map(|l| std::iter::repeat_n(l * 10, 28 * 28)).collect();
            write::idx(&dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), &[n, 28, 28], &pixels).unwrap();
            write::idx(&dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), &[n], &labels).unwrap();
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bf-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn idx_files_parse_gzipped_or_raw_with_a_seeded_split() {
        for gz in [true, false] {
            let d = tmp(&format!("idx{gz}"));
            write_idx_set(&d, 50, 20, gz);
            let ds = DataSet::load(&d, 10, 7).unwrap();
            assert_eq!((ds.train.len(), ds.valid.len(), ds.test.len()), (40, 10, 20));
            assert_eq!(ds.train.size, 28);
            // Labels follow their pixels through the split.
            for img in [&ds.train, &ds.valid, &ds.test] {
                for i in 0..img.len() {
                    assert_eq!(img.pixels[i * 784], img.labels[i] * 10);
                }
            }
            // The split is a function of the seed.
            assert_eq!(DataSet::load(&d, 10, 7).unwrap().valid.labels, ds.valid.labels);
            let (x, y) = ds.batch(&ds.test, &[0, 3], &Device::flex());
            assert_eq!(x.dims(), [2, 1, 28, 28]);
            assert_eq!(y.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), vec![0, 3]);
        }
    }

    #[test]
    fn augmentation_mirrors_and_shifts_within_bounds() {
        let d = tmp("augment");
        write_idx_set(&d, 50, 20, false);
        let mut ds = DataSet::load(&d, 10, 7).unwrap();
        // One image with a distinct value per pixel (a ramp over x plus y).
        let ramp: Vec<u8> = (0..784).map(|i| ((i % 28) * 8 + i / 28) as u8).collect();
        ds.train.pixels[..784].copy_from_slice(&ramp);
        let (mean, std) = (ds.mean[0], ds.std[0]);
        let pixel = |v: f32| ((v * std + mean) * 255.0).round() as i32;
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let x = ds.augmented_batch(&ds.train, &[0], seed, &Device::flex()).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(x.len(), 784);
            assert_eq!(x, ds.augmented_batch(&ds.train, &[0], seed, &Device::flex()).into_data().try_to_vec::<f32>().unwrap(), "seeded");
            // Find the shift and mirror that explain the centre pixel, then check every pixel.
            let centre = pixel(x[14 * 28 + 14]);
            let (sx, sy) = ((centre / 8) as isize, (centre % 8) as isize);
            let _ = (sx, sy);
            let mut explained = false;
            for flip in [false, true] {
                for dy in -2isize..=2 {
                    for dx in -2isize..=2 {
                        let ok = (0..28).all(|y| {
                            (0..28).all(|xx| {
                                let sy = y as isize + dy;
                                let sx0 = xx as isize + dx;
                                let sx = if flip { 27 - sx0 } else { sx0 };
                                let want = if (0..28).contains(&sy) && (0..28).contains(&sx) { ramp[(sy * 28 + sx) as usize] as i32 } else { 0 };
                                pixel(x[y * 28 + xx]) == want
                            })
                        });
                        if ok {
                            explained = true;
                            kinds.insert((flip, dy, dx));
                        }
                    }
                }
            }
            assert!(explained, "seed {seed}: not a mirror and shift of at most 2 pixels");
        }
        assert!(kinds.iter().any(|k| k.0) && kinds.iter().any(|k| !k.0) && kinds.len() > 10, "{kinds:?}");
    }

    #[test]
    fn cifar_batches_parse() {
        let d = tmp("cifar");
        let rec = |l: u8| (l, vec![l; 3072]);
        write::cifar(&d.join("data_batch_1.bin"), &(0..20).map(|i| rec(i % 10)).collect::<Vec<_>>()).unwrap();
        write::cifar(&d.join("test_batch.bin"), &(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let ds = DataSet::load(&d, 4, 1).unwrap();
        assert_eq!((ds.train.channels, ds.train.size, ds.train.len(), ds.valid.len(), ds.test.len()), (3, 32, 16, 4, 5));
        assert_eq!(ds.test.labels, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let d = tmp("bad");
        let e = DataSet::load(&d, 10, 1).unwrap_err().0;
        assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
        write_idx_set(&d, 30, 10, false);
        let f = d.join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 5]).unwrap();
        let e = DataSet::load(&d, 5, 1).unwrap_err().0;
        assert!(e.contains("truncated or corrupt") && e.contains("train-images"), "{e}");
        std::fs::write(&f, b"hello world").unwrap();
        let e = DataSet::load(&d, 5, 1).unwrap_err().0;
        assert!(e.contains("bad magic"), "{e}");
        let e = DataSet::load(&d.join("missing"), 5, 1).unwrap_err().0;
        assert!(e.contains("does not exist"), "{e}");
    }
}
