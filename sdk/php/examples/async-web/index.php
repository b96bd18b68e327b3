<?php

// A web page that runs a job without holding a request: the form submits it, the handle's
// token is stored (here a file per job; in an application, a database column), and the job's
// page shows its status and output until the verified result arrives.
//
//   phase node &                                      # a node on http://127.0.0.1:8700
//   php -S 127.0.0.1:8080 sdk/php/examples/async-web/index.php
//
// Environment: PHASE_NODES (comma-separated URLs, default http://127.0.0.1:8700),
// PHASE_NODE_KEY (a node key to pin), PHASE_MODULE (default build/wasm/ticker.wasm: it
// prints a line at a time), PHASE_JOBS_DIR (where tokens are kept, default a temp dir).
declare(strict_types=1);

require __DIR__ . '/../../autoload.php';

use Phase\Sdk\Client;
use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Exception\PhaseException;
use Phase\Sdk\Job;

$root = dirname(__DIR__, 4);
$client = new Client(explode(',', getenv('PHASE_NODES') ?: 'http://127.0.0.1:8700'), [
    'timeout' => 10,
    'trusted_keys' => getenv('PHASE_NODE_KEY') ? [getenv('PHASE_NODE_KEY')] : [],
]);
$jobs = getenv('PHASE_JOBS_DIR') ?: sys_get_temp_dir() . '/phase-example-jobs';
is_dir($jobs) || mkdir($jobs, 0700, true);
$h = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE);

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    // Submit and return at once: the job runs while no PHP worker waits for it.
    $input = (string) ($_POST['input'] ?? '');
    $module = getenv('PHASE_MODULE') ?: "{$root}/build/wasm/ticker.wasm";
    try {
        $job = Job::fromFile($module)->withInput($input)->withLimits(fuel: 100_000_000_000, deadlineMs: 120_000);
        $handle = $client->submit($job);
    } catch (PhaseException $e) {
        http_response_code(502);
        echo '<p>Could not submit: ' . $h($e->getMessage()) . '</p>';
        return;
    }
    file_put_contents("{$jobs}/{$handle->id}.token", $handle->token());
    header("Location: /?job={$handle->id}", true, 303);
    return;
}

$id = (string) ($_GET['job'] ?? '');
if ($id === '') {
    echo '<!doctype html><title>Phase job</title><form method="post">'
        . '<p>Input (for ticker: lines and work per line): <input name="input" value="20 20000000"></p>'
        . '<button>Run on Phase</button></form>';
    return;
}
if (!preg_match('/^[0-9a-f]{64}$/', $id) || !is_file("{$jobs}/{$id}.token")) {
    http_response_code(404);
    echo '<p>No such job.</p>';
    return;
}
// A later request: the handle comes back from its token, and the result verifies against
// what was submitted.
$handle = $client->resume((string) file_get_contents("{$jobs}/{$id}.token"));
echo '<!doctype html><title>Phase job ' . $h(substr($id, 0, 12)) . '</title>';
try {
    $result = $handle->result();
    if ($result === null) {
        $status = $handle->status();
        echo '<meta http-equiv="refresh" content="1">';
        echo '<p>Status: <b id="status">' . $h($status['status']) . '</b>'
            . (isset($status['fuel_used']) ? ' (fuel ' . (int) $status['fuel_used'] . ')' : '') . '</p>';
        echo '<pre id="output">' . $h($handle->output()) . '</pre>';
        return;
    }
    echo '<p>Status: <b id="status">verified</b>: exit code ' . (int) $result->exitCode()
        . ', signed by node ' . $h($result->receipt()->nodeKey) . '</p>';
    echo '<pre id="output">' . $h($result->stdout()) . '</pre>';
} catch (JobException $e) {
    echo '<p>Status: <b id="status">trapped</b>: ' . $h($e->getMessage()) . '</p>';
} catch (PhaseException $e) {
    echo '<p>Status: <b id="status">failed</b>: ' . $h($e->getMessage()) . '</p>';
}
