<?php

declare(strict_types=1);

require __DIR__ . '/../autoload.php';
// PSR-3 for the logger tests: Debian's php-psr-log (the SDK itself needs none of it).
require_once '/usr/share/php/Psr/Log/autoload.php';
// PSR-18 clients for the transport suites: Debian's Guzzle 7 and Symfony HttpClient.
foreach (
    ['Psr/Http/Message/autoload.php', 'Psr/Http/Message/factory-autoload.php', 'Psr/Http/Client/autoload.php',
        'GuzzleHttp/autoload.php', 'Symfony/Component/HttpClient/autoload.php'] as $lib
) {
    require_once "/usr/share/php/{$lib}";
}
require __DIR__ . '/NodeProcess.php';
require __DIR__ . '/LinesLogger.php';
require __DIR__ . '/Transports.php';
require __DIR__ . '/HostileServer.php';

const REPO = __DIR__ . '/../../..';

/** The host `phase` binary the tests start nodes with (built by scripts/test). */
function phase_bin(): string
{
    $bin = getenv('PHASE_BIN') ?: REPO . '/build/x86_64/phase';
    if (!is_executable($bin)) {
        throw new RuntimeException("{$bin} missing: run scripts/build-appliance x86_64 (or set PHASE_BIN)");
    }
    return $bin;
}

function guest(string $name): string
{
    $path = REPO . "/build/wasm/{$name}.wasm";
    if (!is_file($path)) {
        throw new RuntimeException("{$path} missing: run scripts/build-wasm-examples");
    }
    return $path;
}

/** CPython for WASI (26 MB, pinned by hash; scripts/fetch-python-wasi fetches it once). */
function python_wasm(): string
{
    $path = REPO . '/build/python-wasi/python.wasm';
    if (!is_file($path)) {
        exec(escapeshellarg(REPO . '/scripts/fetch-python-wasi') . ' 2>&1', $out, $status);
        if ($status !== 0) {
            throw new RuntimeException("scripts/fetch-python-wasi failed:\n" . implode("\n", $out));
        }
    }
    return $path;
}
