//! A component for another world: it exports no `afxdp:policy/decisions`.

wit_bindgen::generate!({
    inline: "
        package afxdp:other@0.1.0;
        interface thing {
            hello: func() -> string;
        }
        world other {
            export thing;
        }
    ",
    world: "other",
});

struct Other;

impl exports::afxdp::other::thing::Guest for Other {
    fn hello() -> String {
        "hello".into()
    }
}

export!(Other);
