//! Reading and writing ONNX protobuf at the wire level: fields are located, never decoded into
//! generated types, so a rewrite copies every field it does not touch byte for byte. Shared by
//! the model cut ([`super::split`]) and the int8 rewrite ([`super::quantize`]). Main or loader
//! thread, at model load.

/// An ONNX model's graph, parsed as far as the rewrites need.
pub struct Graph {
    pub model_fields: Vec<Field>,
    /// The GraphProto's bytes and fields.
    pub bytes: std::ops::Range<usize>,
    pub fields: Vec<Field>,
    pub nodes: Vec<Node>,
    /// The inputs a caller feeds (initializers declared as inputs left out).
    pub inputs: Vec<String>,
    /// Their declared dimensions, in the same order (see [`value_info_dims`]).
    pub input_dims: Vec<Option<Vec<Option<u64>>>>,
}

impl Graph {
    pub fn parse(model: &[u8]) -> Option<Graph> {
        let model_fields = fields(model)?;
        let bytes = model_fields.iter().find(|f| f.number == 7 && f.wire == LEN)?.value.clone();
        let graph = &model[bytes.clone()];
        let fields = fields(graph)?;
        let nodes = fields
            .iter()
            .filter(|f| f.number == 1 && f.wire == LEN)
            .map(|f| node(&graph[f.value.clone()]))
            .collect::<Option<_>>()?;
        // Older exports declare initializers as inputs too; those are constants, not inputs.
        let initializers: Vec<String> = fields
            .iter()
            .filter(|f| f.number == 5 && f.wire == LEN)
            .filter_map(|f| tensor_name(&graph[f.value.clone()]))
            .collect();
        let (inputs, input_dims) = fields
            .iter()
            .filter(|f| f.number == 11 && f.wire == LEN)
            .map(|f| &graph[f.value.clone()])
            .filter_map(|info| Some((value_info_name(info)?, value_info_dims(info))))
            .filter(|(name, _)| !initializers.contains(name))
            .unzip();
        Some(Graph { model_fields, bytes, fields, nodes, inputs, input_dims })
    }

    /// The version of the standard operator set the model imports (0 if none).
    pub fn standard_opset(&self, model: &[u8]) -> u64 {
        let imports = self.model_fields.iter().filter(|f| f.number == 8 && f.wire == LEN);
        let standard = imports.filter_map(|f| {
            let opset = &model[f.value.clone()];
            let fields = fields(opset)?;
            let domain =
                fields.iter().find(|f| f.number == 1 && f.wire == LEN).map_or(&[][..], |f| &opset[f.value.clone()]);
            let version = fields.iter().find(|f| f.number == 2 && f.wire == 0)?;
            let mut at = version.value.start;
            (domain.is_empty() || domain == b"ai.onnx").then(|| varint(opset, &mut at)).flatten()
        });
        standard.max().unwrap_or(0)
    }

    /// `model` (the bytes this graph was parsed from) with `graph` as its GraphProto.
    pub fn model_with_graph(&self, model: &[u8], graph: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(model.len());
        for field in &self.model_fields {
            if field.number == 7 && field.wire == LEN {
                put_len(&mut out, 7, graph);
            } else {
                out.extend_from_slice(&model[field.span.clone()]);
            }
        }
        out
    }
}

/// Wire type of length-delimited fields (messages, strings, bytes, packed numbers).
pub const LEN: u8 = 2;

/// One field of a protobuf message: its number, wire type, the whole field's bytes and the
/// value's bytes (for length-delimited fields, without the length).
pub struct Field {
    pub number: u64,
    pub wire: u8,
    pub span: std::ops::Range<usize>,
    pub value: std::ops::Range<usize>,
}

pub fn fields(bytes: &[u8]) -> Option<Vec<Field>> {
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

pub fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
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

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_len(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    put_varint(out, number << 3 | u64::from(LEN));
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A NodeProto's wiring.
pub struct Node {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub op_type: String,
    pub name: String,
    /// Empty for the standard operators.
    pub domain: String,
    /// The `strides` attribute (convolutions).
    pub strides: Vec<u64>,
}

pub fn node(bytes: &[u8]) -> Option<Node> {
    let mut node = Node {
        inputs: Vec::new(),
        outputs: Vec::new(),
        op_type: String::new(),
        name: String::new(),
        domain: String::new(),
        strides: Vec::new(),
    };
    for field in fields(bytes)? {
        let text = || String::from_utf8(bytes[field.value.clone()].to_vec()).ok();
        match (field.number, field.wire) {
            (1, LEN) => node.inputs.push(text()?),
            (2, LEN) => node.outputs.push(text()?),
            (3, LEN) => node.name = text()?,
            (4, LEN) => node.op_type = text()?,
            (7, LEN) => node.domain = text()?,
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
pub fn ints_attribute(bytes: &[u8], wanted: &str) -> Option<Vec<u64>> {
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

pub fn value_info_name(bytes: &[u8]) -> Option<String> {
    let field = fields(bytes)?.into_iter().find(|f| f.number == 1 && f.wire == LEN)?;
    String::from_utf8(bytes[field.value].to_vec()).ok()
}

/// The dimensions a ValueInfoProto declares for its tensor (`type` → `tensor_type` → `shape` →
/// `dim`), `None` for a symbolic or unset one; `None` altogether when it declares no shape.
pub fn value_info_dims(bytes: &[u8]) -> Option<Vec<Option<u64>>> {
    fn inner(bytes: &[u8], number: u64) -> Option<&[u8]> {
        let field = fields(bytes)?.into_iter().find(|f| f.number == number && f.wire == LEN)?;
        Some(&bytes[field.value])
    }
    let shape = inner(inner(inner(bytes, 2)?, 1)?, 2)?;
    let dims = fields(shape)?.into_iter().filter(|f| f.number == 1 && f.wire == LEN);
    dims.map(|dim| {
        let dim = &shape[dim.value];
        let value = fields(dim)?.into_iter().find(|f| f.number == 1 && f.wire == 0);
        Some(value.and_then(|f| {
            let mut at = f.value.start;
            varint(dim, &mut at)
        }))
    })
    .collect()
}

/// The `name` of a TensorProto (field 8).
pub fn tensor_name(bytes: &[u8]) -> Option<String> {
    let field = fields(bytes)?.into_iter().find(|f| f.number == 8 && f.wire == LEN)?;
    String::from_utf8(bytes[field.value].to_vec()).ok()
}

/// A dimension of a declared tensor shape.
pub enum Dim<'a> {
    Value(u64),
    Param(&'a str),
}

/// A ValueInfoProto: float32 tensor `name` of `shape` (unknown rank with `None`).
pub fn float_value_info(name: &str, shape: Option<&[Dim]>) -> Vec<u8> {
    let mut tensor = Vec::new();
    put_varint(&mut tensor, 1 << 3); // elem_type
    put_varint(&mut tensor, 1); // FLOAT
    if let Some(dims) = shape {
        let mut shape = Vec::new();
        for dim in dims {
            let mut field = Vec::new();
            match dim {
                Dim::Value(value) => {
                    put_varint(&mut field, 1 << 3); // dim_value
                    put_varint(&mut field, *value);
                }
                Dim::Param(symbol) => put_len(&mut field, 2, symbol.as_bytes()), // dim_param
            }
            put_len(&mut shape, 1, &field);
        }
        put_len(&mut tensor, 2, &shape);
    }
    let mut kind = Vec::new();
    put_len(&mut kind, 1, &tensor); // tensor_type
    let mut info = Vec::new();
    put_len(&mut info, 1, name.as_bytes());
    put_len(&mut info, 2, &kind);
    info
}
