#[test]
fn scratch() {
    for pair in [["/u/{id}", "/u/new"], ["/files/{*rest}", "/files/{id}"], ["/a/{x}", "/a/{x}/b"], ["/a/{x}.json", "/a/{y}"], ["/{*rest}", "/api/{id}"], ["/a/{x}", "/a/{y}/c"], ["/a/{x}/b", "/a/{y}/c"]] {
        let mut r = matchit::Router::new();
        let mut v = pair.to_vec(); v.sort();
        let a = r.insert(v[0], ());
        let b = r.insert(v[1], ());
        println!("{v:?}: {a:?} {b:?}");
    }
}
