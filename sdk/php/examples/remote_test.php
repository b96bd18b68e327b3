<?php

// Runs `hello` on the node(s) in PHASE_NODES (comma-separated URLs, default
// http://127.0.0.1:8700), pinning PHASE_NODE_KEY if set, and verifies the receipt.
//   PHASE_NODES=http://127.0.0.1:8700 php sdk/php/examples/remote_test.php ["text"]
declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Phase\Sdk\Client;
use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Exception\PhaseException;
use Phase\Sdk\Job;

$root = dirname(__DIR__, 3);
$nodes = explode(',', getenv('PHASE_NODES') ?: 'http://127.0.0.1:8700');
$pinned = getenv('PHASE_NODE_KEY') ? [getenv('PHASE_NODE_KEY')] : [];
$text = $argv[1] ?? 'Hello, World';

echo "Phase remote WASM execution\n===========================\n";
echo 'Nodes:     ' . implode(', ', $nodes) . ($pinned ? "\nPinned:    {$pinned[0]}" : '') . "\n\n";
try {
    $client = new Client($nodes, ['timeout' => 30, 'trusted_keys' => $pinned]);
    $t0 = hrtime(true);
    $result = $client->run(Job::fromFile("{$root}/build/wasm/hello.wasm")->withInput($text));
    $ms = (hrtime(true) - $t0) / 1e6;
    printf(
        "Input:     %s\nOutput:    %s\nExit code: %d\nFuel:      %d\nWall time: %.1f ms round trip (%d us on the node)\n",
        $text,
        $result->stdout(),
        $result->exitCode(),
        $result->fuelUsed(),
        $ms,
        $result->wallTimeUs()
    );
    printf("Receipt:   verified, job %s, signed by node %s\n", $result->jobId(), $result->receipt()->nodeKey);
} catch (JobException $e) {
    fwrite(STDERR, "The job trapped: {$e->result->trap()}\n");
    exit(1);
} catch (PhaseException $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
