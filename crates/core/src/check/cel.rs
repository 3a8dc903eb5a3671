//! The variable paths a CEL expression reads, from its syntax tree, so a `when` or `for_each` is
//! checked against what its step may read as a template is.

use cel::common::ast::{Expr, IdedExpr};
use cel::common::value::CelVal;

/// The variable paths a CEL expression reads, such as `["steps", "check", "status"]`; names bound by
/// macros (`exists(x, ...)`) are left out.
pub(crate) fn cel_paths(
    expression: &IdedExpr,
    bound: &mut Vec<String>,
    paths: &mut Vec<Vec<String>>,
) {
    if let Some(path) = member_path(expression) {
        if !path[0].starts_with('@') && !bound.contains(&path[0]) {
            paths.push(path);
        }
        return;
    }
    match &expression.expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                cel_paths(target, bound, paths);
            }
            for argument in &call.args {
                cel_paths(argument, bound, paths);
            }
        }
        Expr::Comprehension(comprehension) => {
            cel_paths(&comprehension.iter_range, bound, paths);
            let depth = bound.len();
            bound.push(comprehension.iter_var.clone());
            bound.extend(comprehension.iter_var2.clone());
            bound.push(comprehension.accu_var.clone());
            for part in [
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                cel_paths(part, bound, paths);
            }
            bound.truncate(depth);
        }
        Expr::List(list) => {
            for element in &list.elements {
                cel_paths(element, bound, paths);
            }
        }
        Expr::Map(map) => map_entries(&map.entries, bound, paths),
        Expr::Struct(object) => map_entries(&object.entries, bound, paths),
        Expr::Select(select) => cel_paths(&select.operand, bound, paths),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn map_entries(
    entries: &[cel::common::ast::IdedEntryExpr],
    bound: &mut Vec<String>,
    paths: &mut Vec<Vec<String>>,
) {
    use cel::common::ast::EntryExpr;
    for entry in entries {
        match &entry.expr {
            EntryExpr::StructField(field) => cel_paths(&field.value, bound, paths),
            EntryExpr::MapEntry(pair) => {
                cel_paths(&pair.key, bound, paths);
                cel_paths(&pair.value, bound, paths);
            }
        }
    }
}

/// `a.b.c` or `a['b'].c` down to a variable, as its names.
fn member_path(expression: &IdedExpr) -> Option<Vec<String>> {
    match &expression.expr {
        Expr::Ident(name) => Some(vec![name.clone()]),
        Expr::Select(select) => {
            let mut path = member_path(&select.operand)?;
            path.push(select.field.clone());
            Some(path)
        }
        Expr::Call(call) if call.func_name == "_[_]" && call.target.is_none() => {
            let [operand, index] = call.args.as_slice() else {
                return None;
            };
            let Expr::Literal(CelVal::String(key)) = &index.expr else {
                return None;
            };
            let mut path = member_path(operand)?;
            path.push(key.clone());
            Some(path)
        }
        _ => None,
    }
}
