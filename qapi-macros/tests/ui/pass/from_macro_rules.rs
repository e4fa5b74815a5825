// The path reaches schema! through a macro_rules! fragment (an invisible
// group around the literal), and the macro is used inside a function.

macro_rules! qapi_types {
    ($path:literal) => {
        qapi_macros::schema!($path, relative_to = file);
    };
}

fn main() {
    qapi_types!("../../schemas/types.json");
    let p = Point {
        x: 1,
        y: 2,
        label: None,
        colour: Colour::Red,
    };
    let _ = p;
}
