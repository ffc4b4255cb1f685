<?php
error_log('boom from php');
header('Content-Type: text/plain');
echo "ok\n";
