// The whole test schema (types, commands, events, two levels of include),
// named relative to this file.

mod qapi {
    qapi_macros::schema!("../../schemas/api.json", relative_to = file);
}

struct Nothing;

impl qapi::Commands for Nothing {
    async fn add_point(&self, _point: qapi::Point) -> Result<qapi::Count, qapi_rt::QmpError> {
        Ok(qapi::Count { count: 0 })
    }

    async fn query_points(&self) -> Result<Vec<qapi::Point>, qapi_rt::QmpError> {
        Ok(Vec::new())
    }

    async fn clear(&self) -> Result<(), qapi_rt::QmpError> {
        Ok(())
    }

    async fn resize(&self, _arg: qapi::Circle) -> Result<(), qapi_rt::QmpError> {
        Ok(())
    }
}

fn main() {
    let _dispatch = qapi::dispatch(&Nothing, "clear", Default::default());
    assert!(qapi::qmp_schema().is_array());
    let _: qapi::Size = qapi::Size::Bytes(1);
}
