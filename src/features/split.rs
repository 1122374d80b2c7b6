//! Cutting a content model in two at a named tensor — the conv front end and the transformer —
//! by editing the ONNX protobuf at the wire level (no generated types, so every field we do not
//! touch is kept byte for byte). The front end then runs once per new sample and the
//! transformer over the context, instead of the whole model over the whole window. Main or
//! loader thread, at load.

/// The two halves: `front` maps the model's input to the cut tensor, `back` the cut tensor to
/// the model's outputs.
pub struct Halves {
    pub front: Vec<u8>,
    pub back: Vec<u8>,
}

/// Splits `model` at the tensor `at`, or `None` when the graph does not allow it: no such
/// tensor, or a transformer node that needs something of the front end other than `at`.
pub fn split(model: &[u8], at: &str) -> Option<Halves> {
    let model_fields = fields(model)?;
    let graph_field = model_fields.iter().find(|f| f.number == 7 && f.wire == LEN)?;
    let graph = &model[graph_field.value.clone()];
    let graph_fields = fields(graph)?;
    let nodes: Vec<Node> = graph_fields
        .iter()
        .filter(|f| f.number == 1 && f.wire == LEN)
        .map(|f| node(&graph[f.value.clone()]))
        .collect::<Option<_>>()?;
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
    let graph_inputs: Vec<String> = graph_fields
        .iter()
        .filter(|f| f.number == 11)
        .filter_map(|f| value_info_name(&graph[f.value.clone()]))
        .collect();
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
    for field in &graph_fields {
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
        for field in &model_fields {
            if field.number == 7 && field.wire == LEN {
                put_len(&mut out, 7, graph);
            } else {
                out.extend_from_slice(&model[field.span.clone()]);
            }
        }
        out
    };
    Some(Halves { front: rebuild(&front_graph), back: rebuild(&back_graph) })
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
}

fn node(bytes: &[u8]) -> Option<Node> {
    let mut node = Node { inputs: Vec::new(), outputs: Vec::new() };
    for field in fields(bytes)? {
        let text = || String::from_utf8(bytes[field.value.clone()].to_vec()).ok();
        match (field.number, field.wire) {
            (1, LEN) => node.inputs.push(text()?),
            (2, LEN) => node.outputs.push(text()?),
            _ => {}
        }
    }
    Some(node)
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
