#!/usr/bin/env bats
# tests/lessons.bats - the lessons' words: one Korean term per concept
# (GLOSSARY.md), and each Korean page in step with its English page.
# tests/run runs it with every full run (make test).

setup() {
    cd "$BATS_TEST_DIRNAME/.." || return 1
}

@test "every Korean term in the English lessons is spelled as in GLOSSARY.md" {
    run tests/check-terms
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "every Korean page has the same headings, commands and output as its English page" {
    run tests/check-editions
    echo "$output"
    [ "$status" -eq 0 ]
}

# The checks themselves must be able to fail: a pair of pages that agree,
# then one command changed in the English page only.
make_pair() {
    local dir=$BATS_TEST_TMPDIR/pair
    mkdir -p "$dir"
    printf '%s\n' '[한국어](README.ko.md)' '# A lesson' '' 'Run it:' '' \
        '```' '$ make chapter 3   # build it' '$ ./03-accept/server -p 0' \
        'listening on 127.0.0.1:41234' '```' '' '## Going deeper' \
        '' 'A listening socket (리스닝 소켓).' >"$dir/README.md"
    printf '%s\n' '[English](README.md)' '# 수업' '' '실행하세요:' '' \
        '```' '$ make chapter 3   # 빌드합니다' '$ ./03-accept/server -p 0' \
        'listening on 127.0.0.1:41234' '```' '' '## 더 깊이' \
        '' '리스닝 소켓(listening socket)입니다.' >"$dir/README.ko.md"
    echo "$dir"
}

@test "check-editions passes a faithful pair, translated comment included" {
    dir=$(make_pair)
    run tests/check-editions "$dir/README.md"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "check-editions fails, naming the block, when one English command changes" {
    dir=$(make_pair)
    sed -i 's/server -p 0/server -p 8080/' "$dir/README.md"
    run tests/check-editions "$dir/README.md"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"README.ko.md: block 1 (line 6) differs from"*"README.md block 1 (line 6)"* ]]
    [[ $output == *"server -p 8080"* ]]
}

@test "check-editions fails on a spelling the glossary rules out" {
    dir=$(make_pair)
    sed -i 's/리스닝 소켓(/대기 소켓(/' "$dir/README.ko.md"
    run tests/check-editions "$dir/README.md"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"'대기 소켓' is not the glossary's term: write '리스닝 소켓'"* ]]
}

@test "check-terms fails on a Korean term that is not in the glossary" {
    dir=$(make_pair)
    sed -i 's/(리스닝 소켓)/(듣는 소켓)/' "$dir/README.md"
    run tests/check-terms "$dir/README.md"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"'듣는 소켓' is not a Korean term in GLOSSARY.md"* ]]
}
