//! Cutting a content model in two after its conv front end — the front end and the transformer
//! — by editing the ONNX protobuf at the wire level (no generated types, so every field we do
//! not touch is kept byte for byte). The front end then runs once per new sample and the
//! transformer over the context, instead of the whole model over the whole window. Main or
//! loader thread, at load.
//!
//! Community exports do not name the front end's output, so it is found by structure: the
//! first `Conv` whose output is the input downsampled by the model's hop (HuBERT's seven convs
//! stride 5·2⁶ = 320). The caller checks the halves against the whole model.

/// The two halves: `front` maps the model's input to the cut tensor, `back` the cut tensor to
/// the model's outputs.
pub struct Halves {
    pub front: Vec<u8>,
    pub back: Vec<u8>,
    /// The tensor the model was cut at: `front`'s output and `back`'s input.
    pub cut: String,
}

/// Cuts `model` after its conv front end, the first `Conv` that brings the input's time
/// resolution down by `hop`. `None` when there is no such node or the graph needs more than
/// that one tensor to cross the cut.
pub fn split_after_front_end(model: &[u8], hop: u64) -> Option<Halves> {
    let graph = Graph::parse(model)?;
    let cut = front_end_output(&graph, hop)?;
    split(model, &graph, &cut)
}

/// The output of the first `Conv` whose cumulative stride from the graph's inputs is `hop`.
/// Strides are followed through every node (most keep the time axis: activations, norms,
/// reshapes); tensors that do not depend on an input (weights, constants) have none.
fn front_end_output(graph: &Graph, hop: u64) -> Option<String> {
    let mut stride: std::collections::HashMap<&str, u64> =
        graph.inputs.iter().map(|input| (input.as_str(), 1)).collect();
    for node in &graph.nodes {
        let Some(mut time_stride) = node.inputs.iter().filter_map(|i| stride.get(i.as_str()).copied()).max() else {
            continue;
        };
        if node.op_type == "Conv" {
            time_stride = time_stride.saturating_mul(node.strides.iter().product());
            if time_stride == hop {
                return node.outputs.first().cloned();
            }
        }
        for output in &node.outputs {
            stride.insert(output, time_stride);
        }
    }
    None
}

/// The parts of an ONNX model the cut needs.
struct Graph {
    model_fields: Vec<Field>,
    /// The GraphProto's bytes and fields.
    bytes: std::ops::Range<usize>,
    fields: Vec<Field>,
    nodes: Vec<Node>,
    inputs: Vec<String>,
}

impl Graph {
    fn parse(model: &[u8]) -> Option<Graph> {
        let model_fields = fields(model)?;
        let bytes = model_fields.iter().find(|f| f.number == 7 && f.wire == LEN)?.value.clone();
        let graph = &model[bytes.clone()];
        let fields = fields(graph)?;
        let nodes = fields
            .iter()
            .filter(|f| f.number == 1 && f.wire == LEN)
            .map(|f| node(&graph[f.value.clone()]))
            .collect::<Option<_>>()?;
        let inputs = fields
            .iter()
            .filter(|f| f.number == 11 && f.wire == LEN)
            .filter_map(|f| value_info_name(&graph[f.value.clone()]))
            .collect();
        Some(Graph { model_fields, bytes, fields, nodes, inputs })
    }
}

/// Splits `model` at the tensor `at`, or `None` when the graph does not allow it: no such
/// tensor, or a transformer node that needs something of the front end other than `at`.
fn split(model: &[u8], parsed: &Graph, at: &str) -> Option<Halves> {
    let (graph, graph_fields, nodes) = (&model[parsed.bytes.clone()], &parsed.fields, &parsed.nodes);
    let producer = |tensor: &str| nodes.iter().position(|n| n.outputs.iter().any(|o| o == tensor));
    producer(at)?;
    // The front end: everything `at` depends on.
    let mut front = vec![false; nodes.len()];
    let mut pending = vec![at.to_string()];
    while let Some(tensor) = pending.pop() {
        if let Some(index) = producer(&tensor) {
            if !front[index] {
                front[index] = true;
                pending.extend(nodes[index].inputs.iter().filter(|i| !i.is_empty()).cloned());
            }
        }
    }
    // The back may use only `at` of what the front computes, and no graph input.
    let front_outputs: Vec<&String> =
        nodes.iter().zip(&front).filter(|(_, f)| **f).flat_map(|(n, _)| &n.outputs).collect();
    let graph_inputs = &parsed.inputs;
    for (node, _) in nodes.iter().zip(&front).filter(|(_, f)| !**f) {
        for input in &node.inputs {
            let from_front = front_outputs.contains(&input) && input != at;
            if from_front || graph_inputs.contains(input) {
                return None;
            }
        }
    }
    let cut = value_info(at);
    let mut node_index = 0;
    let mut front_graph = Vec::new();
    let mut back_graph = Vec::new();
    for field in graph_fields {
        let bytes = &graph[field.span.clone()];
        match (field.number, field.wire) {
            (1, LEN) => {
                let target = if front[node_index] { &mut front_graph } else { &mut back_graph };
                target.extend_from_slice(bytes);
                node_index += 1;
            }
            (11, LEN) => front_graph.extend_from_slice(bytes), // graph inputs feed the front
            (12, LEN) => back_graph.extend_from_slice(bytes),  // graph outputs come from the back
            _ => {
                front_graph.extend_from_slice(bytes);
                back_graph.extend_from_slice(bytes);
            }
        }
    }
    put_len(&mut front_graph, 12, &cut);
    put_len(&mut back_graph, 11, &cut);
    let rebuild = |graph: &[u8]| {
        let mut out = Vec::with_capacity(model.len());
        for field in &parsed.model_fields {
            if field.number == 7 && field.wire == LEN {
                put_len(&mut out, 7, graph);
            } else {
                out.extend_from_slice(&model[field.span.clone()]);
            }
        }
        out
    };
    Some(Halves { front: rebuild(&front_graph), back: rebuild(&back_graph), cut: at.to_string() })
}

const LEN: u8 = 2;

/// One field of a protobuf message: its number, wire type, the whole field's bytes and the
/// value's bytes (for length-delimited fields, without the length).
struct Field {
    number: u64,
    wire: u8,
    span: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

fn fields(bytes: &[u8]) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let key = varint(bytes, &mut at)?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        let value = match wire {
            0 => {
                let begin = at;
                varint(bytes, &mut at)?;
                begin..at
            }
            1 | 2 | 5 => {
                let len = match wire {
                    1 => 8,
                    5 => 4,
                    _ => usize::try_from(varint(bytes, &mut at)?).ok()?,
                };
                let range = at..at.checked_add(len)?;
                at = range.end;
                range
            }
            _ => return None,
        };
        if at > bytes.len() {
            return None;
        }
        out.push(Field { number, wire, span: start..at, value });
    }
    Some(out)
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_len(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    put_varint(out, number << 3 | u64::from(LEN));
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    op_type: String,
    /// The `strides` attribute (convolutions).
    strides: Vec<u64>,
}

fn node(bytes: &[u8]) -> Option<Node> {
    let mut node = Node { inputs: Vec::new(), outputs: Vec::new(), op_type: String::new(), strides: Vec::new() };
    for field in fields(bytes)? {
        let text = || String::from_utf8(bytes[field.value.clone()].to_vec()).ok();
        match (field.number, field.wire) {
            (1, LEN) => node.inputs.push(text()?),
            (2, LEN) => node.outputs.push(text()?),
            (4, LEN) => node.op_type = text()?,
            (5, LEN) => {
                if let Some(strides) = ints_attribute(&bytes[field.value.clone()], "strides") {
                    node.strides = strides;
                }
            }
            _ => {}
        }
    }
    Some(node)
}

/// The values of an AttributeProto (`name` = 1, `ints` = 8) called `wanted`, packed or not.
fn ints_attribute(bytes: &[u8], wanted: &str) -> Option<Vec<u64>> {
    let fields = fields(bytes)?;
    let name = fields.iter().find(|f| f.number == 1 && f.wire == LEN)?;
    if &bytes[name.value.clone()] != wanted.as_bytes() {
        return None;
    }
    let mut values = Vec::new();
    for field in fields.iter().filter(|f| f.number == 8) {
        let mut at = field.value.start;
        while at < field.value.end {
            values.push(varint(bytes, &mut at)?);
        }
    }
    Some(values)
}

fn value_info_name(bytes: &[u8]) -> Option<String> {
    let field = fields(bytes)?.into_iter().find(|f| f.number == 1 && f.wire == LEN)?;
    String::from_utf8(bytes[field.value].to_vec()).ok()
}

/// A ValueInfoProto: float32 tensor `name` of rank 3 with symbolic dimensions.
fn value_info(name: &str) -> Vec<u8> {
    let mut shape = Vec::new();
    for symbol in ["batch", "channels", "frames"] {
        let mut dim = Vec::new();
        put_len(&mut dim, 2, symbol.as_bytes()); // dim_param
        put_len(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    put_varint(&mut tensor, 1 << 3); // elem_type
    put_varint(&mut tensor, 1); // FLOAT
    put_len(&mut tensor, 2, &shape);
    let mut kind = Vec::new();
    put_len(&mut kind, 1, &tensor); // tensor_type
    let mut info = Vec::new();
    put_len(&mut info, 1, name.as_bytes());
    put_len(&mut info, 2, &kind);
    info
}
