//! moby's `patternmatcher_test.go` and `ignorefile_test.go` tables, and Go's `filepath.Match`
//! table that moby borrows.

use super::*;

fn excludes(patterns: &[&str], path: &str) -> bool {
    Patterns::new(patterns)
        .unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
        .excludes(path)
}

#[test]
fn moby_single_pattern_table() {
    let table: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\*b", "a*b", true),
    ];
    for (pattern, path, want) in table {
        assert_eq!(excludes(&[pattern], path), *want, "{pattern:?} {path:?}");
    }
}

#[test]
fn moby_multi_pattern_table() {
    let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
    let table: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (&["**", &format!("!{whl}")], whl, false),
        (&["**", "!dist/*.whl"], whl, false),
        (&["*"], "fileutils.go", true),
        (&["*.go"], "fileutils.go", true),
        (&["!fileutils.go", "*.go"], "fileutils.go", true),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (&["*.go", "!fileutils.go"], "fileutils.go", false),
        (&["*.go"], ".", false),
        (&[], "/any/path/there", false),
    ];
    for (patterns, path, want) in table {
        assert_eq!(excludes(patterns, path), *want, "{patterns:?} {path:?}");
    }
}

#[test]
fn bad_patterns_are_errors() {
    for bad in [
        "!", "[", "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[^", "[^bc", "a[",
    ] {
        assert!(Patterns::new(&[bad]).is_err(), "{bad:?}");
    }
    // A range that runs backwards: moby finds it when it first matches; here at once.
    assert!(Patterns::new(&["[Local-Only]/"]).is_err());
    let p = Patterns::new(&["docs", "  !docs/README.md  ", ""]).unwrap();
    assert!(p.has_exceptions());
    assert_eq!(p.patterns.len(), 2);
}

/// Go's `filepath.Match` table, as moby runs it.
#[test]
fn go_match_table() {
    let table: &[(&str, &str, bool)] = &[
        ("abc", "abc", true),
        ("*", "abc", true),
        ("*c", "abc", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*", "ab/c", true),
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("ab[c]", "abc", true),
        ("ab[b-d]", "abc", true),
        ("ab[e-g]", "abc", false),
        ("ab[^c]", "abc", false),
        ("ab[^b-d]", "abc", false),
        ("ab[^e-g]", "abc", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "ab", false),
        ("a?b", "a☺b", true),
        ("a[^a]b", "a☺b", true),
        ("a???b", "a☺b", false),
        ("a[^a][^a][^a]b", "a☺b", false),
        ("[a-ζ]*", "α", true),
        ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false),
        ("a*b", "a/b", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("[x\\-]", "x", true),
        ("[x\\-]", "-", true),
        ("[x\\-]", "z", false),
        ("[\\-x]", "x", true),
        ("[\\-x]", "-", true),
        ("[\\-x]", "a", false),
        ("*x", "xxx", true),
        // Literal where moby would pass regex syntax through.
        ("a^b", "a^b", true),
        ("a\\db", "adb", true),
        ("[[]", "[", true),
        ("[a&&b]", "&", true),
    ];
    for (pattern, path, want) in table {
        assert_eq!(excludes(&[pattern], path), *want, "{pattern:?} {path:?}");
    }
}

#[test]
fn patterns_compile_to_moby_kinds() {
    let kind = |p: &str| match compile(&clean(p)).unwrap() {
        Kind::Exact => "exact".to_string(),
        Kind::Prefix(_) => "prefix".to_string(),
        Kind::Suffix(_) => "suffix".to_string(),
        Kind::Regex(re) => re.as_str().to_string(),
    };
    let table = [
        ("*", "^[^/]*$"),
        ("file*", "^file[^/]*$"),
        ("a*/b", "^a[^/]*/b$"),
        ("**", "suffix"),
        ("**/**", "^(.*/)?.*$"),
        ("dir/**", "prefix"),
        ("**/dir", "suffix"),
        ("**/dir2/*", "^(.*/)?dir2/[^/]*$"),
        ("**/dir2/**", "^(.*/)?dir2/.*$"),
        ("**file", "suffix"),
        ("**/file*txt", "^(.*/)?file[^/]*txt$"),
        ("**/**/*.txt", "^(.*/)?(.*/)?[^/]*\\.txt$"),
        (".*", "^\\.[^/]*$"),
        ("abc.def", "exact"),
        ("abc?def", "^abc[^/]def$"),
        ("**/foo/bar", "suffix"),
        ("a(b)c/def", "exact"),
        ("a.|)$(}+{bc", "exact"),
    ];
    for (pattern, want) in table {
        assert_eq!(kind(pattern), want, "{pattern:?}");
    }
}

#[test]
fn ignore_files_are_read_as_moby_reads_them() {
    let text = "\u{feff}test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n  # not a comment\nsub/../x/./y//z\n";
    let lines = read_ignore_file(text);
    let patterns: Vec<&str> = lines.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        patterns,
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!",
            "# not a comment",
            "x/y/z"
        ]
    );
    assert_eq!(lines[0].0, 1);
    assert_eq!(lines[3].0, 5);
}

#[test]
fn paths_clean_as_go_cleans_them() {
    for (path, want) in [
        ("", "."),
        ("a/../..", ".."),
        ("/..", "/"),
        ("a//b/./c/", "a/b/c"),
        ("/a/b/../c", "/a/c"),
        ("**/", "**"),
    ] {
        assert_eq!(clean(path), want, "{path:?}");
    }
}
