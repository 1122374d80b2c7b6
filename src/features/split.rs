//! Cutting a content model in two after its conv front end — the front end and the transformer
//! — by editing the ONNX protobuf at the wire level (no generated types, so every field we do
//! not touch is kept byte for byte). The front end then runs once per new sample and the
//! transformer over the context, instead of the whole model over the whole window. Main or
//! loader thread, at load.
//!
//! Community exports do not name the front end's output, so it is found by structure: the
//! first `Conv` whose output is the input downsampled by the model's hop (HuBERT's seven convs
//! stride 5·2⁶ = 320). The caller checks the halves against the whole model.

use super::onnx_wire::{float_value_info, put_len, Dim, Graph, LEN};

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
    let symbols = [Dim::Param("batch"), Dim::Param("channels"), Dim::Param("frames")];
    let cut = float_value_info(at, Some(&symbols));
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
    Some(Halves {
        front: parsed.model_with_graph(model, &front_graph),
        back: parsed.model_with_graph(model, &back_graph),
        cut: at.to_string(),
    })
}
