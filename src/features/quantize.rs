//! An int8 version of a content model, made at load: every `MatMul` by a constant float matrix
//! (the transformer's projections and feed-forward layers, nearly all of its arithmetic)
//! becomes ONNX Runtime's dynamic quantization pattern — activations quantized per call
//! (`DynamicQuantizeLinear`, uint8), weights once here (int8, symmetric, one scale per
//! matrix), `MatMulInteger`, and a rescale — the same rewrite and rounding as
//! `onnxruntime.quantization.quantize_dynamic` with its defaults. ONNX Runtime fuses it into
//! its integer GEMM (VNNI where the CPU has it). Convolutions (the front end) stay float. Main
//! or loader thread, at model load.

use std::collections::{HashMap, HashSet};

use super::onnx_wire::{fields, put_len, put_varint, tensor_name, value_info_name, varint, Graph, LEN};

/// TensorProto data types.
const FLOAT: u64 = 1;
const INT8: u64 = 3;
/// The symmetric int8 range ONNX Runtime quantizes weights to.
const QMAX: f32 = 127.0;
/// `DynamicQuantizeLinear` needs opset 11.
const MIN_OPSET: u64 = 11;

/// The rewritten model, or `None` when there is nothing to quantize (no `MatMul` by a float
/// matrix stored in the file) or the model's opset is older than 11.
pub fn quantize_matmuls(model: &[u8]) -> Option<Vec<u8>> {
    let graph = Graph::parse(model)?;
    if graph.standard_opset(model) < MIN_OPSET {
        return None;
    }
    let bytes = &model[graph.bytes.clone()];
    let weights: HashMap<String, Weight> = graph
        .fields
        .iter()
        .filter(|f| f.number == 5 && f.wire == LEN)
        .filter_map(|f| Weight::parse(&bytes[f.value.clone()]))
        .map(|weight| (weight.name.clone(), weight))
        .collect();
    let quantizable = |node: &super::onnx_wire::Node| {
        node.op_type == "MatMul"
            && node.domain.is_empty()
            && node.inputs.len() == 2
            && node.outputs.len() == 1
            && weights.contains_key(&node.inputs[1])
    };
    let mut uses: HashMap<&str, (usize, usize)> = HashMap::new();
    for node in &graph.nodes {
        let quantized = quantizable(node);
        for (i, input) in node.inputs.iter().enumerate() {
            let entry = uses.entry(input.as_str()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(quantized && i == 1);
        }
    }
    // Weights only quantized MatMuls read lose their float copy.
    let replaced: HashSet<&str> =
        uses.iter().filter(|(_, (all, quantized))| all == quantized && *quantized > 0).map(|(name, _)| *name).collect();

    let mut out = Vec::with_capacity(bytes.len());
    let mut quantized_activations = HashSet::new();
    let mut quantized_weights = Vec::new();
    let mut node_index = 0;
    for field in &graph.fields {
        let field_bytes = &bytes[field.span.clone()];
        match (field.number, field.wire) {
            (1, LEN) => {
                let node = &graph.nodes[node_index];
                node_index += 1;
                if !quantizable(node) {
                    out.extend_from_slice(field_bytes);
                    continue;
                }
                let (activation, weight) = (&node.inputs[0], &node.inputs[1]);
                if quantized_activations.insert(activation.clone()) {
                    let q = Names::of(activation);
                    put_node(&mut out, "DynamicQuantizeLinear", &[activation], &[&q.values, &q.scale, &q.zero], None);
                }
                if !quantized_weights.contains(weight) {
                    quantized_weights.push(weight.clone());
                }
                let (a, w, output) = (Names::of(activation), Names::of(weight), &node.outputs[0]);
                let [integer, float, scale] = ["int", "float", "scale"].map(|part| format!("{output}_rvcq_{part}"));
                put_node(&mut out, "Mul", &[&a.scale, &w.scale], &[&scale], None);
                put_node(&mut out, "MatMulInteger", &[&a.values, &w.values, &a.zero, &w.zero], &[&integer], None);
                put_node(&mut out, "Cast", &[&integer], &[&float], Some(("to", FLOAT)));
                put_node(&mut out, "Mul", &[&float, &scale], &[output], None);
            }
            // The float weights that were replaced go, and so do their declarations as graph
            // inputs (older exports list initializers there too; left alone, they would become
            // inputs the caller must feed).
            (5, LEN) | (11, LEN) => {
                let value = &bytes[field.value.clone()];
                let name = if field.number == 5 { tensor_name(value) } else { value_info_name(value) };
                if name.is_none_or(|name| !replaced.contains(name.as_str())) {
                    out.extend_from_slice(field_bytes);
                }
            }
            _ => out.extend_from_slice(field_bytes),
        }
    }
    if quantized_weights.is_empty() {
        return None;
    }
    for name in &quantized_weights {
        weights[name].put_quantized(&mut out);
    }
    Some(graph.model_with_graph(model, &out))
}

/// The tensors that stand for a quantized one.
struct Names {
    values: String,
    scale: String,
    zero: String,
}

impl Names {
    fn of(tensor: &str) -> Self {
        let [values, scale, zero] = ["q", "scale", "zero"].map(|part| format!("{tensor}_rvcq_{part}"));
        Names { values, scale, zero }
    }
}

/// A float matrix stored in the model (an initializer).
struct Weight {
    name: String,
    dims: Vec<u64>,
    values: Vec<f32>,
}

impl Weight {
    /// A 2-D float32 initializer with its data in the file (`raw_data` or `float_data`).
    fn parse(bytes: &[u8]) -> Option<Weight> {
        let (mut name, mut dims, mut data_type, mut values) = (None, Vec::new(), None, None);
        for field in fields(bytes)? {
            let value = &bytes[field.value.clone()];
            match (field.number, field.wire) {
                (1, 0) => dims.push(varint(bytes, &mut field.value.start.clone())?),
                (1, LEN) => dims.extend(packed_varints(value)?),
                (2, 0) => data_type = Some(varint(bytes, &mut field.value.start.clone())?),
                (4, LEN) | (9, LEN) => values = Some(little_endian_floats(value)?),
                (8, LEN) => name = Some(String::from_utf8(value.to_vec()).ok()?),
                (14, 0) => return None, // data_location: external data is not in this file
                _ => {}
            }
        }
        let (name, values) = (name?, values?);
        let expected = dims.iter().try_fold(1u64, |n, d| n.checked_mul(*d))?;
        (data_type == Some(FLOAT) && dims.len() == 2 && values.len() as u64 == expected).then_some(Weight {
            name,
            dims,
            values,
        })
    }

    /// Writes the int8 matrix, its scale and its zero point as initializers (graph field 5).
    fn put_quantized(&self, out: &mut Vec<u8>) {
        let names = Names::of(&self.name);
        let scale = self.scale();
        let quantized: Vec<u8> =
            self.values.iter().map(|w| (w / scale).round_ties_even().clamp(-QMAX, QMAX) as i8 as u8).collect();
        put_len(out, 5, &tensor(&names.values, INT8, &self.dims, &quantized));
        put_len(out, 5, &tensor(&names.scale, FLOAT, &[], &scale.to_le_bytes()));
        put_len(out, 5, &tensor(&names.zero, INT8, &[], &[0]));
    }

    /// ONNX Runtime's symmetric scale: the range [-max|w|, max|w|] over [-127, 127].
    fn scale(&self) -> f32 {
        let (low, high) = self.values.iter().fold((0.0f32, 0.0f32), |(lo, hi), &w| (lo.min(w), hi.max(w)));
        let absmax = f64::from(low.abs().max(high.abs()));
        let scale = (2.0 * absmax / (2.0 * f64::from(QMAX))) as f32;
        if scale < f32::MIN_POSITIVE {
            1.0
        } else {
            scale
        }
    }
}

fn packed_varints(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut values = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        values.push(varint(bytes, &mut at)?);
    }
    Some(values)
}

fn little_endian_floats(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes
        .len()
        .is_multiple_of(4)
        .then(|| bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// A TensorProto with `raw_data`.
fn tensor(name: &str, data_type: u64, dims: &[u64], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + name.len() + 16);
    for dim in dims {
        put_varint(&mut out, 1 << 3);
        put_varint(&mut out, *dim);
    }
    put_varint(&mut out, 2 << 3);
    put_varint(&mut out, data_type);
    put_len(&mut out, 8, name.as_bytes());
    put_len(&mut out, 9, raw);
    out
}

/// Appends a NodeProto (graph field 1), with at most one integer attribute.
fn put_node(out: &mut Vec<u8>, op_type: &str, inputs: &[&String], outputs: &[&String], attribute: Option<(&str, u64)>) {
    let mut node = Vec::new();
    for input in inputs {
        put_len(&mut node, 1, input.as_bytes());
    }
    for output in outputs {
        put_len(&mut node, 2, output.as_bytes());
    }
    put_len(&mut node, 4, op_type.as_bytes());
    if let Some((name, value)) = attribute {
        let mut attribute = Vec::new();
        put_len(&mut attribute, 1, name.as_bytes());
        put_varint(&mut attribute, 3 << 3); // i
        put_varint(&mut attribute, value);
        put_varint(&mut attribute, 20 << 3); // type
        put_varint(&mut attribute, 2); // INT
        put_len(&mut node, 5, &attribute);
    }
    put_len(out, 1, &node);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models/hubert-tiny-256.onnx")).unwrap()
    }

    #[test]
    fn every_matmul_by_a_stored_matrix_is_rewritten() {
        let model = tiny_model();
        let quantized = quantize_matmuls(&model).expect("the tiny model has projections");
        let graph = Graph::parse(&quantized).unwrap();
        let count = |op: &str| graph.nodes.iter().filter(|n| n.op_type == op).count();
        let original = Graph::parse(&model).unwrap();
        let matmuls = original.nodes.iter().filter(|n| n.op_type == "MatMul").count();
        // The attention's two activation-by-activation products stay float.
        assert_eq!(count("MatMul"), 2 * 2, "two layers, two activation products each");
        assert_eq!(count("MatMulInteger"), matmuls - count("MatMul"));
        assert_eq!(count("Cast"), count("MatMulInteger"));
        assert!(count("DynamicQuantizeLinear") < count("MatMulInteger"), "Q, K and V share one");
    }

    /// The rewrites read user files before ONNX Runtime does: damaged bytes give `None` or a
    /// model, never a panic.
    #[test]
    fn damaged_models_never_panic() {
        let model = tiny_model();
        // Most of the file is weights; aim the damage at the structure: nodes and tensor headers.
        let graph = Graph::parse(&model).unwrap();
        let structure: Vec<usize> = graph
            .fields
            .iter()
            .filter(|f| f.number != 5)
            .flat_map(|f| f.span.clone())
            .chain(graph.fields.iter().filter(|f| f.number == 5).flat_map(|f| f.span.start..f.span.start + 64))
            .map(|at| graph.bytes.start + at) // spans are relative to the graph
            .filter(|at| *at < model.len())
            .collect();
        let mut rng = fastrand::Rng::with_seed(9);
        for round in 0..2000 {
            let mut bytes = model.clone();
            if round % 4 == 0 {
                bytes.truncate(rng.usize(..bytes.len()));
            } else {
                for _ in 0..1 + round % 8 {
                    let at = structure[rng.usize(..structure.len())];
                    bytes[at] ^= 1 << rng.u8(..8);
                }
            }
            let _ = quantize_matmuls(&bytes);
            let _ = super::super::split::split_after_front_end(&bytes, 320);
        }
    }
}
