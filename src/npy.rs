//! Feature matrices in NumPy's `.npy` format, as RVC writes them (`np.save` of float32
//! `[frames, dim]`): read for `index build` and `retrieve`, written by `retrieve`. Main thread
//! (CLI), never the audio thread.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use thiserror::Error;

/// A row-major float32 matrix: `rows` frames of `cols` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn row(&self, index: usize) -> &[f32] {
        &self.data[index * self.cols..][..self.cols]
    }
}

#[derive(Debug, Error)]
pub enum NpyError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: expected a 2-D float32 array [frames, dim] in C order, found {found}")]
    Shape { path: PathBuf, found: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Reads a float32 `[rows, cols]` array.
pub fn read_matrix(path: &Path) -> Result<Matrix, NpyError> {
    let io = |source| NpyError::Io { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(io)?;
    let shape = npy.shape().to_vec();
    let dtype = npy.dtype().descr();
    let fits = shape.len() == 2 && dtype == "'<f4'" && npy.order() == npyz::Order::C;
    if !fits {
        let found = format!("dtype {dtype}, shape {shape:?}, {:?} order", npy.order());
        return Err(NpyError::Shape { path: path.into(), found });
    }
    let data = npy.into_vec::<f32>().map_err(io)?;
    Ok(Matrix { rows: shape[0] as usize, cols: shape[1] as usize, data })
}

/// Writes a float32 `[rows, cols]` array that NumPy reads with `np.load`.
pub fn write_matrix(path: &Path, matrix: &Matrix) -> Result<(), NpyError> {
    let write = |source| NpyError::Write { path: path.into(), source };
    let file = BufWriter::new(std::fs::File::create(path).map_err(write)?);
    let shape = [matrix.rows as u64, matrix.cols as u64];
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd().map_err(write)?;
    writer.extend(matrix.data.iter().copied()).map_err(write)?;
    writer.finish().map_err(write)
}
