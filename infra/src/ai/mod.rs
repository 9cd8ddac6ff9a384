pub mod replicate;
