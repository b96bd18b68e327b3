<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Canonical;
use Phase\Sdk\Client;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Receipt;
use PHPUnit\Framework\TestCase;

/**
 * The shared test vectors (docs/test-vectors/receipt-v1.json and answer-v1.json), also checked
 * by the Rust tests.
 */
final class VectorsTest extends TestCase
{
    private static function vectors(): array
    {
        $v = json_decode(file_get_contents(REPO . '/docs/test-vectors/receipt-v1.json'), true, 32, JSON_THROW_ON_ERROR);
        self::assertSame('phase-receipt/v1', $v['format']);
        return $v['vectors'];
    }

    public function testValidVectorsReproduceTheCanonicalBytesAndVerify(): void
    {
        $valid = array_filter(self::vectors(), static fn ($t) => $t['valid']);
        self::assertCount(3, $valid);
        foreach ($valid as $t) {
            $j = $t['job'];
            $bytes = Canonical::jobBytes(hex2bin($j['module_sha256']), hex2bin($j['input_sha256']), $j['args'], $j['env'], $j['limits']);
            self::assertSame($t['job_canonical_hex'], bin2hex($bytes), $t['name']);
            self::assertSame($t['job_id'], hash('sha256', $bytes), $t['name']);
            $r = Receipt::fromArray($t['receipt']);
            self::assertSame($t['signed_bytes_hex'], bin2hex($r->signedBytes()), $t['name']);
            self::assertSame($t['job_id'], $r->jobId);
            // The node key is the seed's public key: the signer is who the vector says.
            $pk = sodium_crypto_sign_publickey(sodium_crypto_sign_seed_keypair(hex2bin($t['seed'])));
            self::assertSame(bin2hex($pk), $r->nodeKey);
            $r->verify([$r->nodeKey]);
            self::assertSame(hash('sha256', hex2bin($t['stdout_hex'])), $r->stdoutSha256);
        }
    }

    /**
     * The boot manifest vectors' signatures, checked with libsodium over the signed bytes the
     * vector gives (docs/formats.md "Boot manifest"): another implementation of Ed25519 agrees.
     */
    public function testBootManifestVectorsVerifyWithLibsodium(): void
    {
        $v = json_decode(file_get_contents(REPO . '/docs/test-vectors/boot-manifest-v1.json'), true, 32, JSON_THROW_ON_ERROR);
        $pk = sodium_crypto_sign_publickey(sodium_crypto_sign_seed_keypair(hex2bin($v['seed'])));
        $pairs = [
            'signed_bytes_hex' => 'manifest',
            'with_drivers_signed_bytes_hex' => 'manifest_with_drivers',
            'with_rollout_signed_bytes_hex' => 'manifest_with_rollout',
        ];
        foreach ($pairs as $bytes => $name) {
            $m = $v[$name];
            self::assertSame(bin2hex($pk), $m['publisher_key'], $name);
            self::assertTrue(sodium_crypto_sign_verify_detached(hex2bin($m['signature']), hex2bin($v[$bytes]), $pk), $name);
        }
        self::assertArrayHasKey('drivers', $v['manifest_with_drivers']);
        self::assertArrayNotHasKey('drivers', $v['manifest']);
        // The tampered manifest's signature does not cover its command line.
        $t = $v['tampered_manifest'];
        self::assertStringNotContainsString('init=/bin/sh', $v['manifest']['cmdline']);
        self::assertStringContainsString('init=/bin/sh', $t['cmdline']);
        self::assertSame($v['manifest']['signature'], $t['signature']);
        // A failure report is signed by the node's key; the node's place in rollouts is its key's.
        $node = sodium_crypto_sign_publickey(sodium_crypto_sign_seed_keypair(hex2bin($v['node_seed'])));
        $f = $v['failure_report'];
        self::assertSame(bin2hex($node), $f['node_key']);
        $signed = hex2bin($v['failure_report_signed_bytes_hex']);
        self::assertTrue(sodium_crypto_sign_verify_detached(hex2bin($f['signature']), $signed, $node));
        $h = hash('sha256', "phase-rollout-position/v1\n" . $pk . 'stable' . $node, true);
        [, $hi, $lo] = unpack('N2', substr($h, 0, 8));
        $position = (($hi % 10000) * (4294967296 % 10000) + $lo) % 10000;
        self::assertSame($v['rollout_position_of_node'], $position);
    }

    public function testInvalidVectorsFailVerification(): void
    {
        $invalid = array_filter(self::vectors(), static fn ($t) => !$t['valid']);
        self::assertCount(4, $invalid);
        foreach ($invalid as $t) {
            $r = Receipt::fromArray($t['receipt']);
            self::assertFalse($r->signatureValid(), $t['name']);
            try {
                $r->verify();
                self::fail("{$t['name']} verified");
            } catch (VerificationException $e) {
                self::assertStringContainsString('signature does not verify', $e->getMessage());
            }
        }
    }

    public function testMalformedReceiptsAreProtocolErrors(): void
    {
        $good = self::vectors()[0]['receipt'];
        $cases = [
            'format' => ['format' => 'phase-receipt/v2'],
            'short hex' => ['job_id' => 'abcd'],
            'non-hex' => ['node_key' => str_repeat('zz', 32)],
            'both outcomes' => ['trap' => 'deadline'],
            'unknown trap' => ['exit_code' => null, 'trap' => 'melted'],
            'negative fuel' => ['fuel_used' => -1],
            'float fuel' => ['fuel_used' => 1.5],
        ];
        foreach ($cases as $name => $change) {
            try {
                Receipt::fromArray(array_merge($good, $change));
                self::fail("{$name} parsed");
            } catch (\Phase\Sdk\Exception\ProtocolException $e) {
                self::assertNotSame('', $e->getMessage(), $name);
            }
        }
        $this->expectException(\Phase\Sdk\Exception\ProtocolException::class);
        Receipt::fromJson('{"format":');
    }

    public function testAnswerVectorsVerifyOrFailAsLabelled(): void
    {
        $v = json_decode(file_get_contents(REPO . '/docs/test-vectors/answer-v1.json'), true, 32, JSON_THROW_ON_ERROR);
        self::assertSame('phase-answer/v1', $v['format']);
        // Nothing is sent: the client only checks answers against what was asked.
        $client = new Client('http://127.0.0.1:9');
        $valid = 0;
        foreach ($v['vectors'] as $t) {
            try {
                $result = $client->verifiedAnswer($t['asked'], $t['answer'], 'vector');
            } catch (VerificationException $e) {
                self::assertFalse($t['valid'], "{$t['name']}: {$e->getMessage()}");
                continue;
            }
            self::assertTrue($t['valid'], "{$t['name']} verified");
            self::assertSame($t['answer']['job_id'], $result->jobId(), $t['name']);
            self::assertSame(base64_decode($t['answer']['stdout']), $result->stdout(), $t['name']);
            self::assertSame(base64_decode($t['answer']['stderr']), $result->stderr(), $t['name']);
            self::assertSame($t['answer']['trap_detail'], $result->trapDetail(), $t['name']);
            self::assertSame($t['answer']['replayed'], $result->replayed(), $t['name']);
            foreach ($t['answer']['files'] ?? [] as $f) {
                if (isset($f['data'])) {
                    self::assertSame(base64_decode($f['data']), $result->file('/work', $f['path']), $t['name']);
                }
            }
            $valid++;
        }
        self::assertSame(3, $valid);
        self::assertCount(13, $v['vectors']);
    }
}
