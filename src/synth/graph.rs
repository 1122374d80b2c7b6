//! What the synthesizer loader reads from, and rewrites in, the ONNX graph itself (at the wire
//! level, like the content model's cut): the speaker count, from the embedding table the
//! speaker id indexes, and w-okada's in-graph noise. Its exports draw the prior and the NSF
//! source noise with `RandomNormalLike`, which ONNX Runtime seeds from the clock, so no two
//! renders would be alike; each such node becomes a hash of the element's position and a
//! seed input we feed from the stream's generator (same seed, same noise), scaled and shifted
//! as the node asked. Loader thread.

use crate::features::onnx_wire::{fields, float_value_info, put_len, put_varint, varint, Dim, Graph, LEN};

/// The scalar input the rewrite adds: the seed of the graph's noise for one run.
pub const NOISE_SEED_INPUT: &str = "rvc_stage_noise_seed";

/// Speakers in the embedding table gathered by the speaker id (`ds` or `sid`), when the graph
/// gathers it straight from an initializer.
pub fn speaker_count(model: &[u8]) -> Option<usize> {
    let graph = Graph::parse(model)?;
    let speaker = graph.inputs.iter().find(|name| *name == "ds" || *name == "sid")?;
    let gather = graph.nodes.iter().find(|n| n.op_type == "Gather" && n.inputs.get(1) == Some(speaker))?;
    let table = gather.inputs.first()?;
    let bytes = &model[graph.bytes.clone()];
    graph
        .fields
        .iter()
        .filter(|f| f.number == 5 && f.wire == LEN)
        .map(|f| &bytes[f.value.clone()])
        .find(|tensor| crate::features::onnx_wire::tensor_name(tensor).as_ref() == Some(table))
        .and_then(|tensor| dims(tensor)?.first().map(|&n| n as usize))
}

/// The `dims` of a TensorProto (field 1, packed or not).
fn dims(tensor: &[u8]) -> Option<Vec<u64>> {
    let mut dims = Vec::new();
    for field in fields(tensor)?.iter().filter(|f| f.number == 1) {
        let mut at = field.value.start;
        while at < field.value.end {
            dims.push(varint(tensor, &mut at)?);
        }
    }
    Some(dims)
}

/// `model` with every `RandomNormalLike` node replaced by seeded noise, or `None` when it has
/// none (or cannot be parsed: ONNX Runtime then says what is wrong with it).
pub fn replace_random_normals(model: &[u8]) -> Option<Vec<u8>> {
    let graph = Graph::parse(model)?;
    let bytes = &model[graph.bytes.clone()];
    let mut out = Vec::with_capacity(bytes.len() + 4096);
    let mut node_index = 0;
    let mut replaced = 0;
    for field in &graph.fields {
        let span = &bytes[field.span.clone()];
        if field.number == 1 && field.wire == LEN {
            let node = &graph.nodes[node_index];
            node_index += 1;
            if node.op_type == "RandomNormalLike" && node.domain.is_empty() {
                let (mean, scale) = normal_attributes(&bytes[field.value.clone()]);
                seeded_normal(&mut out, &node.inputs[0], &node.outputs[0], replaced, mean, scale);
                replaced += 1;
                continue;
            }
        }
        out.extend_from_slice(span);
    }
    if replaced == 0 {
        return None;
    }
    for (name, value) in [("hash_a", 12.9898), ("hash_b", 78.233), ("hash_c", 39.3468), ("hash_d", 11.135)] {
        put_len(&mut out, 5, &float_scalar(&format!("rvc_stage_{name}"), value));
    }
    for (name, value) in [("gain", 43_758.547), ("tiny", 1e-7), ("minus_two", -2.0), ("two_pi", std::f32::consts::TAU)]
    {
        put_len(&mut out, 5, &float_scalar(&format!("rvc_stage_{name}"), value));
    }
    put_len(&mut out, 11, &float_value_info(NOISE_SEED_INPUT, Some(&[Dim::Value(1)])));
    Some(graph.model_with_graph(model, &out))
}

/// The `mean` and `scale` attributes of a RandomNormalLike node (0 and 1 by default).
fn normal_attributes(node: &[u8]) -> (f32, f32) {
    let (mut mean, mut scale) = (0.0, 1.0);
    for field in fields(node).unwrap_or_default().iter().filter(|f| f.number == 5 && f.wire == LEN) {
        let attribute = &node[field.value.clone()];
        let Some(parts) = fields(attribute) else { continue };
        let name = parts.iter().find(|f| f.number == 1 && f.wire == LEN).map(|f| &attribute[f.value.clone()]);
        let value = parts
            .iter()
            .find(|f| f.number == 2 && f.wire == 5)
            .map(|f| f32::from_le_bytes(attribute[f.value.clone()].try_into().expect("a fixed32 field has 4 bytes")));
        match (name, value) {
            (Some(b"mean"), Some(v)) => mean = v,
            (Some(b"scale"), Some(v)) => scale = v,
            _ => {}
        }
    }
    (mean, scale)
}

/// Nodes computing `output`, shaped and typed like `like`: N(mean, scale²) noise from Box–Muller
/// over two hashes `frac(sin(i·a + s·b)·g)` of each element's index `i` and the seed `s`
/// (salted per replaced node, so nodes draw different noise).
fn seeded_normal(out: &mut Vec<u8>, like: &str, output: &str, salt: usize, mean: f32, scale: f32) {
    let t = |name: &str| format!("rvc_stage_{salt}_{name}");
    let c = |name: &str| format!("rvc_stage_{name}");
    put_len(out, 5, &float_scalar(&t("salt"), salt as f32 * 0.618_034 + 0.5));
    put_len(out, 5, &float_scalar(&t("mean"), mean));
    put_len(out, 5, &float_scalar(&t("scale"), scale));
    put_len(out, 5, &float_scalar(&t("zero"), 0.0));
    put_len(out, 5, &float_scalar(&t("one"), 1.0));
    let mut node = |op: &str, inputs: &[String], output: String| put_len(out, 1, &node_bytes(op, inputs, &output));
    node("Shape", &[like.into()], t("shape"));
    node("Size", &[like.into()], t("size"));
    node("Cast1", &[t("size")], t("count"));
    node("Range", &[t("zero"), t("count"), t("one")], t("range"));
    node("Reshape", &[t("range"), t("shape")], t("index"));
    node("Add", &[NOISE_SEED_INPUT.into(), t("salt")], t("seed"));
    for (u, a, b) in [("u1", "hash_a", "hash_b"), ("u2", "hash_c", "hash_d")] {
        node("Mul", &[t("index"), c(a)], t(&format!("{u}_ia")));
        node("Mul", &[t("seed"), c(b)], t(&format!("{u}_sb")));
        node("Add", &[t(&format!("{u}_ia")), t(&format!("{u}_sb"))], t(&format!("{u}_arg")));
        node("Sin", &[t(&format!("{u}_arg"))], t(&format!("{u}_sin")));
        node("Mul", &[t(&format!("{u}_sin")), c("gain")], t(&format!("{u}_big")));
        node("Floor", &[t(&format!("{u}_big"))], t(&format!("{u}_floor")));
        node("Sub", &[t(&format!("{u}_big")), t(&format!("{u}_floor"))], t(u));
    }
    node("Add", &[t("u1"), c("tiny")], t("u1_safe"));
    node("Log", &[t("u1_safe")], t("log"));
    node("Mul", &[t("log"), c("minus_two")], t("minus_two_log"));
    node("Sqrt", &[t("minus_two_log")], t("radius"));
    node("Mul", &[t("u2"), c("two_pi")], t("angle"));
    node("Cos", &[t("angle")], t("cos"));
    node("Mul", &[t("radius"), t("cos")], t("normal"));
    node("Mul", &[t("normal"), t("scale")], t("scaled"));
    node("Add", &[t("scaled"), t("mean")], t("shifted"));
    node("CastLike", &[t("shifted"), like.into()], output.into());
}

/// A NodeProto: `op` (the pseudo-op `Cast1` is a Cast to float32) from `inputs` to `output`.
fn node_bytes(op: &str, inputs: &[String], output: &str) -> Vec<u8> {
    let mut node = Vec::new();
    for input in inputs {
        put_len(&mut node, 1, input.as_bytes());
    }
    put_len(&mut node, 2, output.as_bytes());
    put_len(&mut node, 3, output.as_bytes()); // name
    if op == "Cast1" {
        put_len(&mut node, 4, b"Cast");
        let mut to = Vec::new();
        put_len(&mut to, 1, b"to");
        put_varint(&mut to, 3 << 3); // i
        put_varint(&mut to, 1); // FLOAT
        put_varint(&mut to, 20 << 3); // type
        put_varint(&mut to, 2); // INT
        put_len(&mut node, 5, &to);
    } else {
        put_len(&mut node, 4, op.as_bytes());
    }
    node
}

/// A float32 scalar TensorProto.
fn float_scalar(name: &str, value: f32) -> Vec<u8> {
    let mut tensor = Vec::new();
    put_varint(&mut tensor, 2 << 3); // data_type
    put_varint(&mut tensor, 1); // FLOAT
    put_len(&mut tensor, 4, &value.to_le_bytes()); // float_data, packed
    put_len(&mut tensor, 8, name.as_bytes());
    tensor
}

/// A synthesizer cut where its decoder begins: `front` maps the model's inputs to the latent
/// the decoder takes (and whatever else the decoder needs from before the cut, such as the
/// speaker embedding), `back` maps those and the model inputs the decoder reads (`pitchf`, the
/// noise seed) to the audio.
pub struct DecoderCut {
    pub front: Vec<u8>,
    pub back: Vec<u8>,
    /// The decoder's input latent `[1, channels, frames]`: `front`'s first output.
    pub latent: String,
    /// Other tensors crossing the cut, in `front`'s output order after the latent.
    pub crossing: Vec<String>,
}

/// Cuts `model` before its decoder's first convolution (`/dec/conv_pre/Conv` in torch exports,
/// recognised by its node name or its weight's name), or `None` when there is no such node.
/// Whether the halves compute what the whole does is for the caller to check.
pub fn cut_before_decoder(model: &[u8]) -> Option<DecoderCut> {
    let graph = Graph::parse(model)?;
    let conv_pre = graph.nodes.iter().find(|n| {
        n.op_type == "Conv"
            && (n.name.contains("dec/conv_pre") || n.inputs.get(1).is_some_and(|w| w.ends_with("dec.conv_pre.weight")))
    })?;
    let latent = conv_pre.inputs.first()?.clone();
    let producer: std::collections::HashMap<&str, usize> =
        graph.nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i))).collect();
    let ancestors = |roots: Vec<&str>| {
        let mut marked = vec![false; graph.nodes.len()];
        let mut pending = roots;
        while let Some(tensor) = pending.pop() {
            if let Some(&i) = producer.get(tensor) {
                if !std::mem::replace(&mut marked[i], true) {
                    pending.extend(graph.nodes[i].inputs.iter().map(String::as_str));
                }
            }
        }
        marked
    };
    let front = ancestors(vec![latent.as_str()]);
    let bytes = &model[graph.bytes.clone()];
    let outputs: Vec<String> = graph
        .fields
        .iter()
        .filter(|f| f.number == 12 && f.wire == LEN)
        .filter_map(|f| crate::features::onnx_wire::value_info_name(&bytes[f.value.clone()]))
        .collect();
    let needed = ancestors(outputs.iter().map(String::as_str).collect());
    let back: Vec<bool> = needed.iter().zip(&front).map(|(n, f)| *n && !*f).collect();
    let mut crossing: Vec<String> = Vec::new();
    for node in graph.nodes.iter().zip(&back).filter(|(_, b)| **b).map(|(n, _)| n) {
        for input in &node.inputs {
            let from_front = producer.get(input.as_str()).is_some_and(|&i| front[i]);
            if from_front && *input != latent && !crossing.contains(input) {
                crossing.push(input.clone());
            }
        }
    }
    let (mut front_graph, mut back_graph) = (Vec::new(), Vec::new());
    let mut node_index = 0;
    for field in &graph.fields {
        let span = &bytes[field.span.clone()];
        match (field.number, field.wire) {
            (1, LEN) => {
                if front[node_index] {
                    front_graph.extend_from_slice(span);
                } else if back[node_index] {
                    back_graph.extend_from_slice(span);
                }
                node_index += 1;
            }
            (11, LEN) => {
                // Every input feeds the front; the back keeps those its nodes read.
                front_graph.extend_from_slice(span);
                let name = crate::features::onnx_wire::value_info_name(&bytes[field.value.clone()]);
                let read = graph
                    .nodes
                    .iter()
                    .zip(&back)
                    .any(|(n, b)| *b && name.as_ref().is_some_and(|i| n.inputs.contains(i)));
                if read {
                    back_graph.extend_from_slice(span);
                }
            }
            (12, LEN) => back_graph.extend_from_slice(span),
            _ => {
                front_graph.extend_from_slice(span);
                back_graph.extend_from_slice(span);
            }
        }
    }
    for tensor in std::iter::once(&latent).chain(&crossing) {
        put_len(&mut front_graph, 12, &float_value_info(tensor, None));
        put_len(&mut back_graph, 11, &float_value_info(tensor, None));
    }
    Some(DecoderCut {
        front: graph.model_with_graph(model, &front_graph),
        back: graph.model_with_graph(model, &back_graph),
        latent,
        crossing,
    })
}
