<?php

// Runs `hello` with the local `phase` binary and verifies the receipt.
//   php sdk/php/examples/local_test.php [PATH_TO_PHASE] ["text"]
declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Phase\Sdk\Client;
use Phase\Sdk\Exception\PhaseException;
use Phase\Sdk\Job;

$root = dirname(__DIR__, 3);
$phase = $argv[1] ?? "{$root}/build/x86_64/phase";
$text = $argv[2] ?? 'Hello, World';

echo "Phase local WASM execution\n==========================\n\n";
try {
    $t0 = hrtime(true);
    $result = Client::local($phase)->run(Job::fromFile("{$root}/build/wasm/hello.wasm")->withInput($text));
    $ms = (hrtime(true) - $t0) / 1e6;
    printf(
        "Input:     %s\nOutput:    %s\nExit code: %d\nFuel:      %d\nWall time: %.1f ms (%d us in the engine)\n",
        $text,
        $result->stdout(),
        $result->exitCode(),
        $result->fuelUsed(),
        $ms,
        $result->wallTimeUs()
    );
    printf("Receipt:   verified, job %s, signed by %s\n", $result->jobId(), $result->receipt()->nodeKey);
} catch (PhaseException $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
