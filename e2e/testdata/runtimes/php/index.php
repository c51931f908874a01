<?php
// PHP's built-in server routes every request here. preg_match runs on
// PCRE's JIT, which needs executable memory: where the sandbox forbids it,
// PHP logs "Allocation of JIT memory failed" once and falls back.
if (preg_match('/^\/[a-z]*$/', $_SERVER['REQUEST_URI'])) {
    echo "hello from php\n";
} else {
    echo "hello from php (" . $_SERVER['REQUEST_URI'] . ")\n";
}
