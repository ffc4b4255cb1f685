<?php
// A PHP page run through php-cgi (see [[site.cgi]] in the README).
header('Cache-Control: no-store');
$name = isset($_GET['name']) && $_GET['name'] !== '' ? $_GET['name'] : 'world';
$e = fn($s) => htmlspecialchars((string)$s, ENT_QUOTES, 'UTF-8');
?><!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hello from PHP</title>
<style>body{font-family:sans-serif;margin:2em}</style></head><body>
<h1>Hello, <?= $e($name) ?>!</h1>
<p>PHP <?= $e(PHP_VERSION) ?> via <?= $e($_SERVER['GATEWAY_INTERFACE'] ?? '?') ?>,
node <?= $e($_SERVER['SHOAL_NODE'] ?? '?') ?>, <?= $e(date('Y-m-d H:i:s T')) ?>.</p>
<form method="get"><label>Your name <input name="name" value="<?= $e($name) ?>"></label> <button>Greet</button></form>
<p>Session as the server passed it: <code><?= $e($_SERVER['HTTP_SESSION'] ?? '(empty)') ?></code></p>
</body></html>
