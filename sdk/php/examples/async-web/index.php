<?php

// A web page that runs a job without holding a request: the form submits it, the handle's
// token is stored (here a file per job; in an application, a database column), and the job's
// page shows its status and output until the verified result arrives.
//
//   phase node &                                      # a node on http://127.0.0.1:8700
//   php -S 127.0.0.1:8080 sdk/php/examples/async-web/index.php
//
// A second form takes a CSV file: CPython for WASI runs wasm-examples/python/totals.py on it
// and the page offers the file the script left, once it verified against the receipt.
//
// Environment: PHASE_NODES (comma-separated URLs, default http://127.0.0.1:8700),
// PHASE_NODE_KEY (a node key to pin), PHASE_MODULE (default build/wasm/ticker.wasm: it
// prints a line at a time), PHASE_PYTHON (default build/python-wasi/python.wasm, from
// scripts/fetch-python-wasi), PHASE_JOBS_DIR (where tokens are kept, default a temp dir).
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

/** The largest CSV file the page takes. */
const MAX_UPLOAD = 1 << 20;

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    // Submit and return at once: the job runs while no PHP worker waits for it.
    try {
        $upload = $_FILES['csv'] ?? null;
        if ($upload !== null) {
            // A file job: the uploaded CSV and a Python script in, a CSV of totals out.
            if ($upload['error'] !== UPLOAD_ERR_OK || $upload['size'] > MAX_UPLOAD) {
                http_response_code(400);
                echo '<p>Upload a CSV file of at most ' . MAX_UPLOAD . ' bytes.</p>';
                return;
            }
            $python = getenv('PHASE_PYTHON') ?: "{$root}/build/python-wasi/python.wasm";
            $job = Job::fromFile($python)->withArgs(['/work/totals.py'])
                ->withFile('/work', 'totals.py', (string) file_get_contents("{$root}/wasm-examples/python/totals.py"))
                ->withFile('/work', 'in/upload.csv', (string) file_get_contents($upload['tmp_name']))
                ->withLimits(fuel: 100_000_000_000, deadlineMs: 120_000);
        } else {
            $module = getenv('PHASE_MODULE') ?: "{$root}/build/wasm/ticker.wasm";
            $job = Job::fromFile($module)->withInput((string) ($_POST['input'] ?? ''))->withLimits(fuel: 100_000_000_000, deadlineMs: 120_000);
        }
        $handle = $client->submit($job);
    } catch (\InvalidArgumentException $e) {
        // A module this server cannot read (PHASE_MODULE, PHASE_PYTHON).
        http_response_code(500);
        echo '<p>Could not build the job: ' . $h($e->getMessage()) . '</p>';
        return;
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
        . '<button>Run on Phase</button></form>'
        . '<form method="post" enctype="multipart/form-data">'
        . '<p>A CSV file (a header, then a name and numbers per row) for Python to total: <input type="file" name="csv"></p>'
        . '<button>Total it on Phase</button></form>';
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
ob_start(); // a download replaces the page
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
    // A file the job left, as verified against the receipt: shown, and offered for download.
    $left = $result->file('/work', 'out/totals.csv');
    if ($left !== null && isset($_GET['download'])) {
        ob_end_clean();
        header('Content-Type: text/csv');
        header('Content-Disposition: attachment; filename="totals.csv"');
        echo $left;
        return;
    }
    echo '<p>Status: <b id="status">verified</b>: exit code ' . (int) $result->exitCode()
        . ', signed by node ' . $h($result->receipt()->nodeKey) . '</p>';
    echo '<pre id="output">' . $h($result->stdout()) . '</pre>';
    if ($left !== null) {
        echo '<p>The job left <a href="/?job=' . $h($id) . '&amp;download=1">totals.csv</a>:</p>';
        echo '<pre id="file">' . $h($left) . '</pre>';
    }
} catch (JobException $e) {
    echo '<p>Status: <b id="status">trapped</b>: ' . $h($e->getMessage()) . '</p>';
} catch (PhaseException $e) {
    echo '<p>Status: <b id="status">failed</b>: ' . $h($e->getMessage()) . '</p>';
}
