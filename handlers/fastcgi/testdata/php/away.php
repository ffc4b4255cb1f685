<?php
header('Location: https://example.com/elsewhere');
